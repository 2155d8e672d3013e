import type { Clock, Timer } from '../clock.js';
import { HEARTBEAT_MISSES } from '../config/defaults.js';

/**
 * Watches a registered control connection. The relay pings every interval, so a relay
 * not heard from for HEARTBEAT_MISSES intervals is gone even if TCP has not noticed
 * (a half-open connection): `onSilent` is called once, with that limit, and the watch
 * ends. Looked at once per interval; stop() ends it when the connection does.
 */
export class HeartbeatWatch {
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #onSilent: (silentMs: number) => void;
  #lastHeard: number;
  #timer: Timer | undefined;

  constructor(clock: Clock, intervalMs: number, onSilent: (silentMs: number) => void) {
    this.#clock = clock;
    this.#intervalMs = intervalMs;
    this.#onSilent = onSilent;
    this.#lastHeard = clock.monotonic();
    this.#schedule();
  }

  /** A line came from the relay. */
  heard(): void {
    this.#lastHeard = this.#clock.monotonic();
  }

  stop(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    this.#timer = this.#clock.setTimeout(() => this.#check(), this.#intervalMs);
  }

  #check(): void {
    const limitMs = HEARTBEAT_MISSES * this.#intervalMs;
    if (this.#clock.monotonic() - this.#lastHeard <= limitMs) return this.#schedule();
    this.#timer = undefined;
    this.#onSilent(limitMs);
  }
}
