import { systemClock, type Clock } from '../clock.js';
import { CLIENT_DEFAULTS } from '../config/defaults.js';

/**
 * Idle connections kept even when no client has come for a long time: one, so the first
 * client of a quiet service needs no dial-back, at one descriptor a service on the relay.
 */
export const AUTO_FLOOR = 1;
/** The most `prewarm: 'auto'` asks for: the relay's default --max-warm. A relay that allows fewer says so with ERR limit. */
export const AUTO_CEILING = 64;
/** Time constant of the arrival-rate average. */
const RATE_TAU_MS = 1_000;
/** The remembered burst halves every this long, so an idle pool drifts down to the floor within a minute. */
const PEAK_HALF_LIFE_MS = 10_000;
/**
 * Arrivals this close together (or within a few dial times) count as one burst: a burst
 * of clients reaches the service over several event-loop turns, and the refills it
 * causes queue behind it, so the window is generous (measured: 12 clients at once spread
 * over 20-150 ms in one process under load).
 */
const MIN_BURST_WINDOW_MS = 250;
const BURST_WINDOW_DIALS = 4;
/** Kept above the estimated need, for a burst a little larger than the last. */
const HEADROOM = 1.25;
/** Before anything was measured: a loopback dial-back with TLS. */
const INITIAL_DIAL_MS = 2;

/**
 * How many idle data connections `prewarm: 'auto'` keeps: enough that every client
 * arriving before a used connection is replaced finds one parked. Two estimates of that
 * need, the larger wins: the average arrival rate times the time a data connection takes
 * to open (a steady stream), and the largest recent burst (clients that arrive together,
 * faster than any refill). Both decay when nothing arrives, down to AUTO_FLOOR.
 */
export class WarmSizer {
  readonly #clock: Clock;
  readonly #mostCeiling: number;
  #ceiling: number;
  /** Arrivals per ms, as of #rateAt. */
  #rate = 0;
  #rateAt: number;
  #dialMs = INITIAL_DIAL_MS;
  #burstStart = Number.NEGATIVE_INFINITY;
  #burstCount = 0;
  /** The largest burst, decayed, as of #peakAt. */
  #peak = 0;
  #peakAt: number;

  constructor(clock: Clock, ceiling = AUTO_CEILING) {
    this.#clock = clock;
    this.#ceiling = this.#mostCeiling = ceiling;
    this.#rateAt = this.#peakAt = clock.now();
  }

  /** A public client arrived, whether a parked connection took it or it needed a dial-back. */
  arrival(): void {
    const now = this.#clock.now();
    this.#rate = this.#rateNow(now) + 1 / RATE_TAU_MS;
    this.#rateAt = now;
    const window = Math.max(MIN_BURST_WINDOW_MS, BURST_WINDOW_DIALS * this.#dialMs);
    if (now - this.#burstStart > window) {
      this.#burstStart = now;
      this.#burstCount = 0;
    }
    this.#burstCount++;
    const peak = this.#peakNow(now);
    this.#peak = Math.max(peak, this.#burstCount);
    this.#peakAt = now;
  }

  /** A data connection took this long to open (a dial-back, or a parked one to connect). */
  dialed(ms: number): void {
    if (!(ms >= 0 && Number.isFinite(ms))) return;
    this.#dialMs += (ms - this.#dialMs) / 8;
  }

  /** The relay allows no more than this for now (it refused one over a limit); never above the first ceiling. */
  limitCeiling(ceiling: number): void {
    this.#ceiling = Math.max(0, Math.min(this.#mostCeiling, ceiling));
  }

  get ceiling(): number {
    return this.#ceiling;
  }

  /** The pool size wanted now. */
  target(): number {
    const now = this.#clock.now();
    const steady = this.#rateNow(now) * this.#dialMs;
    const need = Math.ceil(HEADROOM * Math.max(steady, this.#peakNow(now)));
    return Math.min(this.#ceiling, Math.max(AUTO_FLOOR, need));
  }

  #rateNow(now: number): number {
    return this.#rate * Math.exp(-(now - this.#rateAt) / RATE_TAU_MS);
  }

  #peakNow(now: number): number {
    return this.#peak * 2 ** (-(now - this.#peakAt) / PEAK_HALF_LIFE_MS);
  }
}

/** What a registration's `prewarm` option asks of its pool: a fixed size, or a fresh sizer. */
export function poolSize(prewarm: number | 'auto' | undefined): number | WarmSizer {
  const asked = prewarm ?? CLIENT_DEFAULTS.prewarm;
  return asked === 'auto' ? new WarmSizer(systemClock) : asked;
}

/** The `warm=` of HELLO: the most this service will park (the relay gives a prewarm key when above 0). */
export function helloWarm(prewarm: number | 'auto' | undefined): number {
  const asked = prewarm ?? CLIENT_DEFAULTS.prewarm;
  return asked === 'auto' ? AUTO_CEILING : asked;
}
