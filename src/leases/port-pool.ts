import { systemClock, type Clock, type Timer } from '../clock.js';
import type { PortRange } from '../config/defaults.js';
import type { LeaseRecord } from './lease-store.js';

const inScope = (scope: ClaimScope, port: number): boolean => scope.ports.some((range) => port >= range.first && port <= range.last);

/** Tries to listen on a port: true when it is ours, false when something else holds it. */
export type TryListen = (port: number) => Promise<boolean>;

/** Why a reservation ended before its key came back. */
export type ReservationEnd = 'expired' | 'evicted' | 'revoked';

/**
 * Where one claim may look, for a tenant: only its own ports, and when the range is
 * full it may end only its own reservations, never another tenant's.
 */
export interface ClaimScope {
  tenant: string;
  ports: readonly PortRange[];
}

interface Reservation {
  key: string;
  until: number;
  timer: Timer;
  tenant: string | undefined;
}

interface Holder {
  key: string | undefined;
  tenant: string | undefined;
  /**
   * Set while the port is being claimed (agreed with the fleet, listened on): held
   * against other registrations, but no lease yet. A fleet node that took it for one
   * would defend it in etcd against the key that owns it.
   */
  claiming?: true;
}

/**
 * Hands out public ports from a range, lowest free first, skipping ports another
 * program holds, and remembers which key owns which port: a live registration's port
 * is in use; a departed one's stays reserved for its key until the grace ends, so the
 * service that comes back gets its old address. Keys here are hashes of resume keys;
 * the keys themselves never reach this table.
 *
 * Reservations never lock the whole range: a newcomer that finds no free port ends the
 * oldest reservation of another key early (onEnded is told, with 'evicted').
 */
export class PortPool {
  readonly #range: PortRange;
  readonly #clock: Clock;
  readonly #onEnded: (port: number, key: string, why: ReservationEnd) => void;
  /** Ports of live registrations (and claims in flight), with their key if they have one. */
  readonly #inUse = new Map<number, Holder>();
  readonly #reserved = new Map<number, Reservation>();

  constructor(range: PortRange, clock: Clock = systemClock, onEnded: (port: number, key: string, why: ReservationEnd) => void = () => {}) {
    this.#range = range;
    this.#clock = clock;
    this.#onEnded = onEnded;
  }

  get range(): PortRange {
    return this.#range;
  }

  /**
   * The port reserved for this key if there is one; else the wanted port if it is in
   * range and neither held nor reserved for another key; else the lowest port that is.
   * Undefined when the range is exhausted even after evicting every reservation.
   */
  async acquire(tryListen: TryListen, wanted?: number, key?: string, scope?: ClaimScope): Promise<number | undefined> {
    const holder = { key, tenant: scope?.tenant };
    let own = key === undefined ? undefined : this.reservedPortOf(key);
    // A reload took this port from the tenant: the key moves, and the reservation must not linger on its quota.
    if (own !== undefined && scope !== undefined && !inScope(scope, own)) {
      this.#end(own, 'revoked');
      own = undefined;
    }
    for (const port of [own, wanted]) {
      if (port !== undefined && this.#available(port, key, scope) && (await this.#claim(port, holder, tryListen))) return port;
    }
    for (;;) {
      for (const range of scope?.ports ?? [this.#range]) {
        for (let port = range.first; port <= range.last; port++) {
          if (this.#available(port, key, scope) && (await this.#claim(port, holder, tryListen))) return port;
        }
      }
      if (!this.evictOldest(key, scope?.tenant)) return undefined;
    }
  }

  /** The port reserved for a key (its registration departed within the grace), if any. */
  reservedPortOf(key: string): number | undefined {
    for (const [port, reservation] of this.#reserved) if (reservation.key === key) return port;
    return undefined;
  }

  /** The tenant whose key holds a port (live or reserved), if any. */
  tenantOf(port: number): string | undefined {
    return this.#inUse.get(port)?.tenant ?? this.#reserved.get(port)?.tenant;
  }

  /** Gives a live port back; with a key and a grace it stays reserved for that key (and its tenant). */
  release(port: number, key?: string, graceMs = 0): void {
    const tenant = this.#inUse.get(port)?.tenant;
    this.#inUse.delete(port);
    if (key !== undefined && graceMs > 0) this.reserve(port, key, this.#clock.now() + graceMs, tenant);
  }

  /** Records a reservation made elsewhere (a state file, a previous worker); ignored if the port is taken. */
  reserve(port: number, key: string, until: number, tenant?: string): boolean {
    if (this.#inUse.has(port) || port < this.#range.first || port > this.#range.last) return false;
    this.#drop(port);
    const timer = this.#clock.setTimeout(() => this.#end(port, 'expired'), until - this.#clock.now());
    this.#reserved.set(port, { key, until, timer, tenant });
    return true;
  }

  /** Reservations held for a tenant's departed services: they count against its quota. */
  reservationsOf(tenant: string): number {
    let count = 0;
    for (const reservation of this.#reserved.values()) if (reservation.tenant === tenant) count++;
    return count;
  }

  /** Ends every reservation of a tenant (it was removed); onEnded is told, with 'revoked'. */
  revokeTenant(tenant: string): void {
    for (const [port, reservation] of [...this.#reserved]) if (reservation.tenant === tenant) this.#end(port, 'revoked');
  }

  /** The port is no longer this process's (its key moved to another worker): neither live nor reserved, nobody told. */
  forget(port: number): void {
    this.#inUse.delete(port);
    this.#drop(port);
  }

  isReserved(port: number): boolean {
    return this.#reserved.has(port);
  }

  /** Every port with a key: live ones with `until: null`. What a lease store keeps. */
  snapshot(): LeaseRecord[] {
    const records: LeaseRecord[] = [];
    const record = (key: string, port: number, until: number | null, tenant: string | undefined): LeaseRecord => (tenant === undefined ? { key, port, until } : { key, port, until, tenant });
    for (const [port, { key, tenant, claiming }] of this.#inUse) if (key !== undefined && claiming === undefined) records.push(record(key, port, null, tenant));
    for (const [port, { key, until, tenant }] of this.#reserved) records.push(record(key, port, until, tenant));
    return records;
  }

  #available(port: number, key: string | undefined, scope: ClaimScope | undefined): boolean {
    if (port < this.#range.first || port > this.#range.last || this.#inUse.has(port)) return false;
    if (scope !== undefined && !inScope(scope, port)) return false;
    const reservation = this.#reserved.get(port);
    return reservation === undefined || reservation.key === key;
  }

  async #claim(port: number, holder: Holder, tryListen: TryListen): Promise<boolean> {
    // Marked before the await, so two registrations racing never get the same port.
    this.#inUse.set(port, { ...holder, claiming: true });
    let listening = false;
    try {
      listening = await tryListen(port);
    } finally {
      if (listening) {
        this.#drop(port);
        this.#inUse.set(port, holder);
      } else this.#inUse.delete(port);
    }
    return listening;
  }

  /**
   * Ends the reservation that ends soonest (the oldest), unless it is the asker's own;
   * with a tenant, only among that tenant's reservations. False when there is none.
   */
  evictOldest(key: string | undefined, tenant?: string): boolean {
    let oldest: [number, Reservation] | undefined;
    for (const entry of this.#reserved) {
      if (tenant !== undefined && entry[1].tenant !== tenant) continue;
      if (entry[1].key !== key && (oldest === undefined || entry[1].until < oldest[1].until)) oldest = entry;
    }
    if (oldest === undefined) return false;
    this.#end(oldest[0], 'evicted');
    return true;
  }

  /** Ends the key's reservation of `port`, if it has it, as for a newcomer (a tenant's at another worker). */
  evict(port: number, key: string): void {
    if (this.#reserved.get(port)?.key === key) this.#end(port, 'evicted');
  }

  #end(port: number, why: ReservationEnd): void {
    const reservation = this.#reserved.get(port);
    if (reservation === undefined) return;
    this.#drop(port);
    this.#onEnded(port, reservation.key, why);
  }

  #drop(port: number): void {
    const reservation = this.#reserved.get(port);
    if (reservation === undefined) return;
    this.#clock.clearTimeout(reservation.timer);
    this.#reserved.delete(port);
  }
}
