import { FileLeaseStore } from '../leases/file-lease-store.js';
import { noLeaseStore, type LeaseRecord, type LeaseStore, type Place } from '../leases/lease-store.js';
import type { Logger } from '../log.js';
import { LeaseAuthority } from './lease-authority.js';
import type { FromWorker, LeaseAnswer, LeaseQuestion, ToWorker } from './messages.js';

type Tell = (slot: number, msg: ToWorker) => void;

/**
 * The master's side of the leases of several workers: answers their claims and counts
 * from the LeaseAuthority, tells a worker when a key it serves moved to another, sums
 * the tenants' open clients, and keeps the state file (`--state`) for all of them.
 * Used only with `--workers` above 1; a single worker keeps its own leases.
 */
export class MasterLeases {
  readonly #authority = new LeaseAuthority();
  readonly #store: LeaseStore;
  readonly #graceMs: number;
  readonly #tell: Tell;
  /** Each worker's tenants' open clients, as it last reported them. */
  readonly #clients = new Map<number, Map<string, number>>();

  constructor(stateFile: string | undefined, graceMs: number, log: Logger, tell: Tell) {
    this.#store = stateFile === undefined ? noLeaseStore : new FileLeaseStore({ file: stateFile, graceMs, log });
    this.#graceMs = graceMs;
    this.#tell = tell;
  }

  /** The state file's leases (rejects with a UsageError for an unsafe file), all given to the first worker. */
  async load(): Promise<LeaseRecord[]> {
    const records = await this.#store.load();
    this.#authority.report(0, records, Date.now());
    return this.#authority.leasesOf(0);
  }

  /** What a worker that replaces `slot` (it died) starts with. */
  leasesOf(slot: number): LeaseRecord[] {
    return this.#authority.leasesOf(slot);
  }

  /** The worker that serves the port now, if any: held clients handed over for it go there. */
  slotOfPort(port: Place): number | undefined {
    return this.#authority.slotOfPort(port);
  }

  /** A message from a worker of `slot`, answered through `reply`; false when it is none of these. */
  onMessage(slot: number, msg: FromWorker, reply: (msg: ToWorker) => void): boolean {
    if (msg.kind === 'ask') reply({ kind: 'answer', id: msg.id, answer: this.#answer(slot, msg.question) });
    else if (msg.kind === 'lease-table') this.#report(slot, msg.leases);
    else if (msg.kind === 'tenant-clients') this.#tenantClients(slot, msg.local, reply);
    else return false;
    return true;
  }

  /** The worker of `slot` died: its services' ports are reserved for them, its clients no longer counted. */
  died(slot: number): void {
    this.#authority.died(slot, this.#graceMs, Date.now());
    this.#clients.delete(slot);
    this.#save();
  }

  #answer(slot: number, question: LeaseQuestion): LeaseAnswer {
    if (question.ask === 'claim') return this.#authority.claim(slot, question.key, question.port, question.tenant, Date.now());
    if (question.ask === 'services') return this.#authority.servicesElsewhere(slot, question.key);
    if (question.ask === 'host') return this.#authority.hostElsewhere(slot, question.hosts);
    // A monotonic clock: a step of the wall clock must not keep a first member's worker for long.
    if (question.ask === 'pool') return this.#authority.slotOfKey(question.key, slot, performance.now());
    const room = question.room;
    if (room !== undefined) {
      for (const evicted of this.#authority.makeRoom(question.tenant, room.key, room.max)) this.#tell(evicted.from, { kind: 'evict', key: evicted.key, port: evicted.port });
    }
    return this.#authority.tenantKeys(question.tenant);
  }

  #report(slot: number, leases: LeaseRecord[]): void {
    for (const move of this.#authority.report(slot, leases, Date.now())) this.#tell(move.from, { kind: 'moved', key: move.key, port: move.port });
    this.#save();
  }

  #save(): void {
    void this.#store.save(() => this.#authority.snapshot());
  }

  /** A worker's counts: it gets the others' totals, and when its counts changed the others get theirs at once. */
  #tenantClients(slot: number, local: [string, number][], reply: (msg: ToWorker) => void): void {
    const changed = JSON.stringify([...(this.#clients.get(slot) ?? [])]) !== JSON.stringify(local);
    this.#clients.set(slot, new Map(local));
    reply({ kind: 'tenant-clients', elsewhere: this.#clientsElsewhere(slot) });
    if (changed) for (const other of this.#clients.keys()) if (other !== slot) this.#tell(other, { kind: 'tenant-clients', elsewhere: this.#clientsElsewhere(other) });
  }

  #clientsElsewhere(slot: number): [string, number][] {
    const totals = new Map<string, number>();
    for (const [other, counts] of this.#clients) {
      if (other === slot) continue;
      for (const [tenant, count] of counts) totals.set(tenant, (totals.get(tenant) ?? 0) + count);
    }
    return [...totals];
  }
}
