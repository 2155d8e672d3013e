import type { Socket } from 'node:net';
import type { ClaimAnswer, FleetEvents, LeaseRecord, LeaseStore, Place, TenantClientsShare } from '../leases/lease-store.js';
import type { Logger } from '../log.js';
import type { FromWorker, LeaseAnswer, LeaseQuestion, ToWorker } from './messages.js';
import { handOff, handOffMember } from './worker-link.js';

/** A question the master has not answered within this is taken as unanswerable (the master is gone or stuck). */
const ANSWER_TIMEOUT_MS = 5_000;
/**
 * At most how long a worker goes without telling the master its tenants' open clients
 * (it tells it at once when a count with a maxClients changes), so a new worker learns
 * the others' and a lost message is made good.
 */
const TENANT_CLIENTS_INTERVAL_MS = 1_000;

/**
 * The lease store of one of several workers (`--workers N`): the master is the one
 * authority on which key owns which port across them (upgrade/lease-authority.ts),
 * with the state file behind it. Claims, counts and the worker's whole share go to the
 * master over IPC; the master says when a key this worker serves registered at another.
 */
export class MasterLeaseStore implements LeaseStore {
  readonly #log: Logger;
  readonly #asked = new Map<number, (answer: LeaseAnswer | undefined) => void>();
  #nextId = 1;
  #paused = false;
  #events: FleetEvents | undefined;
  /** Ports granted to this worker that another still listened on for the same key. */
  readonly #shared = new Set<number>();
  #clientsElsewhere = new Map<string, number>();
  /** A tenant's services are counted over every worker of this relay. */
  readonly reach = "the relay's workers";
  readonly unreachable = "the relay's workers cannot agree on a port now (the master process did not answer)";

  constructor(log: Logger) {
    this.#log = log;
    process.on('message', (msg: ToWorker) => this.#onMessage(msg));
  }

  /** The leases come with the master's start message (the state file's, or a dead worker's), not from here. */
  async load(): Promise<LeaseRecord[]> {
    return [];
  }

  async save(current: () => LeaseRecord[]): Promise<void> {
    if (!this.#paused) tell({ kind: 'lease-table', leases: current() });
  }

  async pause(): Promise<void> {
    this.#paused = true;
  }

  resume(current: () => LeaseRecord[]): void {
    this.#paused = false;
    void this.save(current);
  }

  async claim(key: string, port: number, known: boolean, tenant?: string): Promise<ClaimAnswer> {
    const answer = await this.#claim(key, port, known, tenant);
    if (answer === 'moved') this.#shared.add(port);
    if (answer === 'moved' || typeof answer !== 'object') return answer === 'moved' ? 'granted' : answer;
    return typeof answer.elsewhere === 'number' ? { elsewhere: answer.elsewhere } : 'taken';
  }

  /** A host on the names ports, agreed across the workers as a port is (a name's door listens on nothing, so no socket is shared). */
  async claimName(key: string, host: string, known: boolean, tenant?: string): Promise<ClaimAnswer<string>> {
    const answer = await this.#claim(key, host, known, tenant);
    if (answer === 'moved' || typeof answer !== 'object') return answer === 'moved' ? 'granted' : answer;
    return typeof answer.elsewhere === 'string' ? { elsewhere: answer.elsewhere } : 'taken';
  }

  async #claim(key: string, port: Place, known: boolean, tenant: string | undefined): Promise<ClaimAnswer<Place> | 'moved'> {
    const answer = await this.#ask(tenant === undefined ? { ask: 'claim', key, port } : { ask: 'claim', key, port, tenant });
    if (answer === 'moved' || answer === 'granted' || answer === 'taken' || (typeof answer === 'object' && !Array.isArray(answer))) return answer;
    // No answer: a place this worker holds for the key already may be kept, as a fleet node does.
    return known ? 'granted' : 'unreachable';
  }

  async servicesElsewhere(key: string): Promise<number> {
    const answer = await this.#ask({ ask: 'services', key });
    return typeof answer === 'number' ? answer : 0;
  }

  async tenantKeys(tenant: string, room?: { key: string; max: number }): Promise<string[]> {
    const answer = await this.#ask({ ask: 'tenant-keys', tenant, ...(room === undefined ? {} : { room }) });
    if (!Array.isArray(answer)) throw new Error('the master did not answer');
    return answer;
  }

  shareTenantClients(local: () => ReadonlyMap<string, number>): TenantClientsShare {
    // One message per turn of the event loop however many clients came or went in it:
    // the master passes the totals on at once, so another worker's count lags by one
    // IPC hop (a fraction of a millisecond), not by a polling interval.
    let scheduled = false;
    const tellNow = (): void => {
      scheduled = false;
      tell({ kind: 'tenant-clients', local: [...local()] });
    };
    setInterval(tellNow, TENANT_CLIENTS_INTERVAL_MS).unref();
    return {
      elsewhere: (tenant) => this.#clientsElsewhere.get(tenant) ?? 0,
      changed: () => {
        if (scheduled) return;
        scheduled = true;
        setImmediate(tellNow);
      },
    };
  }

  async hostElsewhere(hosts: string[]): Promise<string | undefined> {
    const answer = await this.#ask({ ask: 'host', hosts });
    return Array.isArray(answer) ? answer[0] : undefined;
  }

  async handOverMember(key: string, socket: Socket, head: Buffer): Promise<boolean> {
    const slot = await this.#ask({ ask: 'pool', key });
    if (typeof slot !== 'number' || slot < 0 || socket.destroyed) return false;
    handOffMember(slot, socket, head, this.#log);
    return true;
  }

  heldBySibling(port: number): boolean {
    return this.#shared.delete(port);
  }

  handOver(port: Place, client: Socket): void {
    handOff(port, client, this.#log);
  }

  follow(events: FleetEvents): void {
    this.#events = events;
  }

  #ask(question: LeaseQuestion): Promise<LeaseAnswer | undefined> {
    if (!process.connected) return Promise.resolve(undefined);
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(undefined), ANSWER_TIMEOUT_MS);
      const settle = (answer: LeaseAnswer | undefined): void => {
        clearTimeout(timer);
        this.#asked.delete(id);
        resolve(answer);
      };
      this.#asked.set(id, settle);
      tell({ kind: 'ask', id, question });
    });
  }

  #onMessage(msg: ToWorker): void {
    if (msg.kind === 'answer') this.#asked.get(msg.id)?.(msg.answer);
    else if (msg.kind === 'moved') {
      this.#log.info(typeof msg.port === 'number' ? { publicPort: msg.port } : { name: msg.port }, 'its service registered at another worker: that worker serves it now');
      this.#events?.moved?.(msg.key, msg.port);
    } else if (msg.kind === 'evict') this.#events?.evicted?.(msg.key, msg.port);
    else if (msg.kind === 'tenant-clients') this.#clientsElsewhere = new Map(msg.elsewhere);
  }
}

function tell(msg: FromWorker): void {
  if (process.connected) process.send?.(msg);
}
