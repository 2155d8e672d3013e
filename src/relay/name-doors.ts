import type { Socket } from 'node:net';
import type { ClaimAnswer, LeaseStore, NameLease } from '../leases/lease-store.js';
import { NamePool } from '../leases/name-pool.js';
import type { ReservationEnd } from '../leases/port-pool.js';
import type { AccessList } from '../protocol/cidr.js';
import { hostCandidates } from '../protocol/names.js';
import type { RelayContext } from './context.js';
import { PublicDoor } from './public-door.js';

/**
 * A name for a key, or why not: another key holds it (here, or fleet-wide), the key
 * holds another name fleet-wide (`elsewhere`), or the fleet could not be asked in time.
 */
export type NameTake = { ok: true } | { ok: false; why: 'taken' | 'unreachable' } | { ok: false; why: 'elsewhere'; host: string };

/**
 * The doors of the hosts registered on the names ports, one per host, with the pool of
 * which key holds which host. A name's door listens on nothing (its clients come from
 * the names ports, names-ports.ts) and takes no port of the range; otherwise it is a
 * port's door: open from the first claim until the key loses the name, holding clients
 * while the service is away.
 */
export class NameDoors {
  readonly pool: NamePool;
  readonly #ctx: RelayContext;
  readonly #store: LeaseStore;
  readonly #doors = new Map<string, PublicDoor>();
  readonly #maxClientsPerIp: (host: string) => number | undefined;
  readonly #tenantAccess: (host: string) => AccessList | undefined;

  constructor(
    ctx: RelayContext,
    store: LeaseStore,
    onEnded: (host: string, why: ReservationEnd) => void,
    maxClientsPerIp: (host: string) => number | undefined,
    tenantAccess: (host: string) => AccessList | undefined,
  ) {
    this.#ctx = ctx;
    this.#store = store;
    this.#maxClientsPerIp = maxClientsPerIp;
    this.#tenantAccess = tenantAccess;
    this.pool = new NamePool(ctx.clock, (host, _key, why) => onEnded(host, why));
  }

  doorOf(host: string): PublicDoor | undefined {
    return this.#doors.get(host);
  }

  /** The door of a client's host: the exact one, else the longest wildcard that matches it. */
  route(host: string): PublicDoor | undefined {
    for (const candidate of hostCandidates(host)) {
      const door = this.#doors.get(candidate);
      if (door !== undefined) return door;
    }
    return undefined;
  }

  /** Takes `host` for a registration of `key` (agreed fleet-wide first, in a fleet) and opens its door. */
  async take(host: string, key: string, tenant: string | undefined): Promise<NameTake> {
    const known = this.pool.holderOf(host) === key;
    // Marked before the await, so two keys racing for one name never both get it.
    if (!this.pool.take(host, key, tenant)) return { ok: false, why: 'taken' };
    const answer: ClaimAnswer<string> = this.#store.claimName === undefined ? 'granted' : await this.#store.claimName(key, host, known, tenant);
    if (answer !== 'granted') {
      this.pool.release(host);
      // What the key had here is not its own fleet-wide: nothing may stay held for it.
      if (known) this.closeDoor(host, 'the fleet gives the name to another key');
      if (answer === 'taken' || answer === 'unreachable') return { ok: false, why: answer };
      return { ok: false, why: 'elsewhere', host: answer.elsewhere };
    }
    this.pool.settle(host);
    if (!this.#doors.has(host)) this.#open(host);
    return { ok: true };
  }

  /** A lease made elsewhere (the state file, a previous worker): reserved for its key, its door open. */
  install(record: NameLease, until: number): void {
    if (this.#doors.has(record.name) || !this.pool.reserve(record.name, record.key, until, record.tenant)) return;
    this.#open(record.name);
  }

  /** The key moved to another worker: the name is not this process's any more; its door is dropped unclosed (its held clients go along). */
  forget(host: string): void {
    this.pool.forget(host);
    this.#doors.delete(host);
  }

  closeDoor(host: string, reason: string): void {
    this.#doors.get(host)?.close(reason);
    this.#doors.delete(host);
  }

  /** Every door stops; the clients held at them are returned, their first bytes still unread in their stream. */
  closeAll(): { host: string; client: Socket }[] {
    const held: { host: string; client: Socket }[] = [];
    for (const [host, door] of this.#doors) for (const client of door.stopAccepting()) held.push({ host, client });
    this.#doors.clear();
    return held;
  }

  snapshot(): NameLease[] {
    return this.pool.snapshot();
  }

  #open(host: string): void {
    this.#doors.set(
      host,
      new PublicDoor(
        this.#ctx,
        host,
        undefined,
        () => this.#maxClientsPerIp(host),
        () => this.#tenantAccess(host),
      ),
    );
  }
}
