import type { SpliceCounts } from '../net/splice.js';
import { Ring } from './ring.js';

/** Samples kept per direction: with one a second, the sparkline covers the last minute. */
const HISTORY_SAMPLES = 60;

/** Bytes a second each way, from periodic samples of live running totals. */
export class RateHistory {
  readonly #counts: SpliceCounts;
  #last: SpliceCounts;
  readonly #a = new Ring<number>(HISTORY_SAMPLES);
  readonly #b = new Ring<number>(HISTORY_SAMPLES);
  #rate = { a: 0, b: 0 };

  constructor(counts: SpliceCounts) {
    this.#counts = counts;
    this.#last = { ...counts };
  }

  sample(elapsedSeconds: number): void {
    const a = Math.round((this.#counts.a - this.#last.a) / elapsedSeconds);
    const b = Math.round((this.#counts.b - this.#last.b) / elapsedSeconds);
    this.#last = { ...this.#counts };
    this.#rate = { a, b };
    this.#a.push(a);
    this.#b.push(b);
  }

  /** The latest rate (a: from clients, b: to them). */
  get rate(): { fromClients: number; toClients: number } {
    return { fromClients: this.#rate.a, toClients: this.#rate.b };
  }

  /** Oldest sample first. */
  get history(): { fromClients: number[]; toClients: number[] } {
    return { fromClients: this.#a.toArray(), toClients: this.#b.toArray() };
  }
}
