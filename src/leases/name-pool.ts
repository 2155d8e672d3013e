import { systemClock, type Clock, type Timer } from '../clock.js';
import type { NameLease } from './lease-store.js';
import type { ReservationEnd } from './port-pool.js';

interface Holder {
  key: string;
  tenant: string | undefined;
  /** Set while the host is being claimed (agreed with the fleet): held, but no lease yet (see PortPool's). */
  claiming?: true;
}

interface Reservation extends Holder {
  until: number;
  timer: Timer;
}

/**
 * Which key holds which host on the names ports, as the port pool does for ports but
 * with no range: a host is any name, so none is ever scarce and none is evicted for a
 * newcomer. A live registration's host is in use; a departed one's stays reserved for
 * its key until the grace ends. A key holds at most one host.
 */
export class NamePool {
  readonly #clock: Clock;
  readonly #onEnded: (host: string, key: string, why: ReservationEnd) => void;
  readonly #inUse = new Map<string, Holder>();
  readonly #reserved = new Map<string, Reservation>();

  constructor(clock: Clock = systemClock, onEnded: (host: string, key: string, why: ReservationEnd) => void = () => {}) {
    this.#clock = clock;
    this.#onEnded = onEnded;
  }

  /** The key holding a host (live, being claimed, or reserved), if any. */
  holderOf(host: string): string | undefined {
    return this.#inUse.get(host)?.key ?? this.#reserved.get(host)?.key;
  }

  /** The host reserved for a key (its registration departed within the grace), if any. */
  reservedNameOf(key: string): string | undefined {
    for (const [host, reservation] of this.#reserved) if (reservation.key === key) return host;
    return undefined;
  }

  tenantOf(host: string): string | undefined {
    return this.#inUse.get(host)?.tenant ?? this.#reserved.get(host)?.tenant;
  }

  /** Takes a host for a live registration of `key`; false when another key holds it. */
  take(host: string, key: string, tenant: string | undefined): boolean {
    const holder = this.holderOf(host);
    if (holder !== undefined && holder !== key) return false;
    // A live registration of the key keeps its lease while its successor claims the host again.
    const live = this.#inUse.get(host);
    this.#drop(host);
    this.#inUse.set(host, live !== undefined && live.claiming === undefined ? { key, tenant } : { key, tenant, claiming: true });
    return true;
  }

  /** The claim of a taken host was granted: it is a lease now. */
  settle(host: string): void {
    const holder = this.#inUse.get(host);
    if (holder !== undefined) this.#inUse.set(host, { key: holder.key, tenant: holder.tenant });
  }

  /** Gives a live host back; with a grace it stays reserved for its key (and tenant). */
  release(host: string, graceMs = 0): void {
    const holder = this.#inUse.get(host);
    this.#inUse.delete(host);
    if (holder !== undefined && graceMs > 0) this.reserve(host, holder.key, this.#clock.now() + graceMs, holder.tenant);
  }

  /** Records a reservation made elsewhere (a state file, a previous worker); ignored if the host is taken. */
  reserve(host: string, key: string, until: number, tenant?: string): boolean {
    if (this.#inUse.has(host)) return false;
    this.#drop(host);
    const timer = this.#clock.setTimeout(() => this.end(host, 'expired'), until - this.#clock.now());
    this.#reserved.set(host, { key, until, timer, tenant });
    return true;
  }

  /** The host is no longer this process's (its key moved to another worker): neither live nor reserved, nobody told. */
  forget(host: string): void {
    this.#inUse.delete(host);
    this.#drop(host);
  }

  /** Ends the key's reservation of `host` (its tenant's newcomer at another worker needs the room). */
  evict(host: string, key: string): void {
    if (this.#reserved.get(host)?.key === key) this.end(host, 'evicted');
  }

  isReserved(host: string): boolean {
    return this.#reserved.has(host);
  }

  reservationsOf(tenant: string): number {
    let count = 0;
    for (const reservation of this.#reserved.values()) if (reservation.tenant === tenant) count++;
    return count;
  }

  /** The reservations of a tenant whose hosts fail `keep` (every one without it) end; onEnded is told, with 'revoked'. */
  revokeTenant(tenant: string, keep: (host: string) => boolean = () => false): void {
    for (const [host, reservation] of [...this.#reserved]) if (reservation.tenant === tenant && !keep(host)) this.end(host, 'revoked');
  }

  /** Ends the tenant's reservation that ends soonest, unless it is the asker's own. False when there is none. */
  evictOldest(key: string | undefined, tenant: string): boolean {
    let oldest: [string, Reservation] | undefined;
    for (const entry of this.#reserved) {
      if (entry[1].tenant === tenant && entry[1].key !== key && (oldest === undefined || entry[1].until < oldest[1].until)) oldest = entry;
    }
    if (oldest === undefined) return false;
    this.end(oldest[0], 'evicted');
    return true;
  }

  /** Ends a reservation before its key is back; onEnded is told. */
  end(host: string, why: ReservationEnd): void {
    const reservation = this.#reserved.get(host);
    if (reservation === undefined) return;
    this.#drop(host);
    this.#onEnded(host, reservation.key, why);
  }

  /** Every host with its key: live ones with `until: null`. What a lease store keeps. */
  snapshot(): NameLease[] {
    const records: NameLease[] = [];
    const record = (name: string, key: string, until: number | null, tenant: string | undefined): NameLease => ({ key, name, until, ...(tenant === undefined ? {} : { tenant }) });
    for (const [host, { key, tenant, claiming }] of this.#inUse) if (claiming === undefined) records.push(record(host, key, null, tenant));
    for (const [host, { key, until, tenant }] of this.#reserved) records.push(record(host, key, until, tenant));
    return records;
  }

  #drop(host: string): void {
    const reservation = this.#reserved.get(host);
    if (reservation === undefined) return;
    this.#clock.clearTimeout(reservation.timer);
    this.#reserved.delete(host);
  }
}
