import type { PortRange } from '../config.js';

/** Tries to listen on a port: true when it is ours, false when something else holds it. */
export type TryListen = (port: number) => Promise<boolean>;

interface Reservation {
  resume: string;
  until: number;
}

/**
 * Hands out public ports from a range, lowest free first, skipping ports another
 * program holds. A port given back with a resume key stays reserved for that key
 * for a grace period, so a service that reconnects gets its old address back.
 */
export class PortPool {
  readonly #range: PortRange;
  readonly #now: () => number;
  readonly #inUse = new Set<number>();
  readonly #reserved = new Map<number, Reservation>();

  constructor(range: PortRange, now: () => number = Date.now) {
    this.#range = range;
    this.#now = now;
  }

  get range(): PortRange {
    return this.#range;
  }

  /**
   * The wanted port if it is in range and not held or reserved for another key;
   * otherwise the lowest port that is. Undefined when the range is exhausted.
   */
  async acquire(tryListen: TryListen, wanted?: number, resume?: string): Promise<number | undefined> {
    this.#expireReservations();
    if (wanted !== undefined && this.#available(wanted, resume) && (await this.#claim(wanted, tryListen))) {
      return wanted;
    }
    for (let port = this.#range.first; port <= this.#range.last; port++) {
      if (this.#available(port, resume) && (await this.#claim(port, tryListen))) return port;
    }
    return undefined;
  }

  /** Gives a port back; with a resume key it stays reserved for graceMs. */
  release(port: number, resume?: string, graceMs = 0): void {
    this.#inUse.delete(port);
    if (resume !== undefined && graceMs > 0) this.#reserved.set(port, { resume, until: this.#now() + graceMs });
  }

  isReserved(port: number): boolean {
    this.#expireReservations();
    return this.#reserved.has(port);
  }

  #available(port: number, resume: string | undefined): boolean {
    if (port < this.#range.first || port > this.#range.last || this.#inUse.has(port)) return false;
    const reservation = this.#reserved.get(port);
    return reservation === undefined || reservation.resume === resume;
  }

  async #claim(port: number, tryListen: TryListen): Promise<boolean> {
    // Marked before the await, so two registrations racing never get the same port.
    this.#inUse.add(port);
    let listening = false;
    try {
      listening = await tryListen(port);
    } finally {
      if (listening) this.#reserved.delete(port);
      else this.#inUse.delete(port);
    }
    return listening;
  }

  #expireReservations(): void {
    const now = this.#now();
    for (const [port, reservation] of this.#reserved) if (reservation.until <= now) this.#reserved.delete(port);
  }
}
