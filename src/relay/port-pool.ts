import { systemClock, type Clock, type Timer } from '../clock.js';
import type { PortRange } from '../config.js';
import type { LeaseRecord } from './lease-store.js';

/** Tries to listen on a port: true when it is ours, false when something else holds it. */
export type TryListen = (port: number) => Promise<boolean>;

/** Why a reservation ended before its key came back. */
export type ReservationEnd = 'expired' | 'evicted';

interface Reservation {
  key: string;
  until: number;
  timer: Timer;
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
  readonly #inUse = new Map<number, string | undefined>();
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
  async acquire(tryListen: TryListen, wanted?: number, key?: string): Promise<number | undefined> {
    const own = key === undefined ? undefined : this.reservedPortOf(key);
    for (const port of [own, wanted]) {
      if (port !== undefined && this.#available(port, key) && (await this.#claim(port, key, tryListen))) return port;
    }
    for (;;) {
      for (let port = this.#range.first; port <= this.#range.last; port++) {
        if (this.#available(port, key) && (await this.#claim(port, key, tryListen))) return port;
      }
      if (!this.#evictOldest(key)) return undefined;
    }
  }

  /** The port reserved for a key (its registration departed within the grace), if any. */
  reservedPortOf(key: string): number | undefined {
    for (const [port, reservation] of this.#reserved) if (reservation.key === key) return port;
    return undefined;
  }

  /** Gives a live port back; with a key and a grace it stays reserved for that key. */
  release(port: number, key?: string, graceMs = 0): void {
    this.#inUse.delete(port);
    if (key !== undefined && graceMs > 0) this.reserve(port, key, this.#clock.now() + graceMs);
  }

  /** Records a reservation made elsewhere (a state file, a previous worker); ignored if the port is taken. */
  reserve(port: number, key: string, until: number): boolean {
    if (this.#inUse.has(port) || port < this.#range.first || port > this.#range.last) return false;
    this.#drop(port);
    const timer = this.#clock.setTimeout(() => this.#end(port, 'expired'), until - this.#clock.now());
    this.#reserved.set(port, { key, until, timer });
    return true;
  }

  /** Ends a reservation at once, without telling onEnded (its owner said it is gone for good). */
  forget(port: number): void {
    this.#drop(port);
  }

  isReserved(port: number): boolean {
    return this.#reserved.has(port);
  }

  get reservations(): number {
    return this.#reserved.size;
  }

  /** Every port with a key: live ones with `until: null`. What a lease store keeps. */
  snapshot(): LeaseRecord[] {
    const records: LeaseRecord[] = [];
    for (const [port, key] of this.#inUse) if (key !== undefined) records.push({ key, port, until: null });
    for (const [port, { key, until }] of this.#reserved) records.push({ key, port, until });
    return records;
  }

  #available(port: number, key: string | undefined): boolean {
    if (port < this.#range.first || port > this.#range.last || this.#inUse.has(port)) return false;
    const reservation = this.#reserved.get(port);
    return reservation === undefined || reservation.key === key;
  }

  async #claim(port: number, key: string | undefined, tryListen: TryListen): Promise<boolean> {
    // Marked before the await, so two registrations racing never get the same port.
    this.#inUse.set(port, key);
    let listening = false;
    try {
      listening = await tryListen(port);
    } finally {
      if (listening) this.#drop(port);
      else this.#inUse.delete(port);
    }
    return listening;
  }

  /** Ends the reservation that ends soonest (the oldest), unless it is the asker's own. */
  #evictOldest(key: string | undefined): boolean {
    let oldest: [number, Reservation] | undefined;
    for (const entry of this.#reserved) {
      if (entry[1].key !== key && (oldest === undefined || entry[1].until < oldest[1].until)) oldest = entry;
    }
    if (oldest === undefined) return false;
    this.#end(oldest[0], 'evicted');
    return true;
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
