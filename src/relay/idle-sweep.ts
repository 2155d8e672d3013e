import type { Clock, Timer } from '../clock.js';
import type { SpliceCounts } from '../net/splice.js';

interface Watched {
  counts: SpliceCounts;
  /** Bytes both ways when the sweep last saw them change, and when that was. */
  seen: number;
  since: number;
}

/**
 * Finds tunnels that moved no byte either way for `idleMs` (`--idle-timeout`). One
 * coarse periodic sweep compares each tunnel's byte counts, which the splice updates
 * anyway, with what it saw last time: a byte costs nothing extra. The alternative,
 * socket.setTimeout, re-arms a timer on every read and every write of every socket and
 * keeps a timer object per socket; with 10 000 busy tunnels that is work per chunk,
 * where the sweep is one pass over the open tunnels a second (well under a millisecond
 * for 10 000). The price is precision: a tunnel is cut between idleMs and idleMs plus
 * one sweep interval after its last byte.
 */
export class IdleSweep<T> {
  readonly #idleMs: number;
  readonly #intervalMs: number;
  readonly #clock: Clock;
  readonly #onIdle: (item: T) => void;
  readonly #watched = new Map<T, Watched>();
  #timer: Timer | undefined;

  constructor(idleMs: number, clock: Clock, onIdle: (item: T) => void) {
    this.#idleMs = idleMs;
    // A quarter of the timeout, at most a second: a few percent late at worst for long timeouts.
    this.#intervalMs = Math.max(10, Math.min(1000, Math.floor(idleMs / 4)));
    this.#clock = clock;
    this.#onIdle = onIdle;
  }

  get size(): number {
    return this.#watched.size;
  }

  watch(item: T, counts: SpliceCounts): void {
    this.#watched.set(item, { counts, seen: counts.a + counts.b, since: this.#clock.now() });
    // The sweep runs only while something is watched: an idle relay wakes for nothing.
    this.#timer ??= this.#clock.setTimeout(() => this.#sweep(), this.#intervalMs);
  }

  forget(item: T): void {
    this.#watched.delete(item);
  }

  #sweep(): void {
    this.#timer = undefined;
    const now = this.#clock.now();
    const idle: T[] = [];
    for (const [item, watched] of this.#watched) {
      const total = watched.counts.a + watched.counts.b;
      if (total !== watched.seen) {
        watched.seen = total;
        watched.since = now;
      } else if (now - watched.since >= this.#idleMs) {
        idle.push(item);
      }
    }
    for (const item of idle) {
      this.#watched.delete(item);
      this.#onIdle(item);
    }
    if (this.#watched.size > 0) this.#timer = this.#clock.setTimeout(() => this.#sweep(), this.#intervalMs);
  }
}
