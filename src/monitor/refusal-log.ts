import { systemClock, type Clock } from '../clock.js';
import type { Logger } from '../log.js';

/** Lines per reason per window; beyond that only a count is kept. */
const LINES_PER_WINDOW = 20;
const WINDOW_MS = 1000;

/**
 * Logs each refusal once at warn, but at most LINES_PER_WINDOW a second for each
 * reason: a flood of bad connections must not become a flood of synchronous log
 * writes that slows every healthy tunnel. What is left out is summed up in one line
 * when the next window opens. Metrics count every refusal regardless.
 */
export class RefusalLog {
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #windows = new Map<string, { start: number; lines: number; suppressed: number }>();

  constructor(log: Logger, clock: Clock = systemClock) {
    this.#log = log;
    this.#clock = clock;
  }

  warn(reason: string, fields: Record<string, unknown>, message: string, log: Logger = this.#log): void {
    // A step of the wall clock must neither stretch nor cut short a window.
    const now = this.#clock.monotonic();
    let window = this.#windows.get(reason);
    if (window === undefined || now - window.start >= WINDOW_MS) {
      window = { start: now, lines: 0, suppressed: 0 };
      this.#windows.set(reason, window);
    }
    if (window.lines < LINES_PER_WINDOW) {
      window.lines++;
      log.warn({ reason, ...fields }, message);
      return;
    }
    if (window.suppressed++ === 0) {
      const current = window;
      this.#clock.setTimeout(() => this.#summarise(reason, current), WINDOW_MS - (now - window.start));
    }
  }

  #summarise(reason: string, window: { suppressed: number }): void {
    this.#log.warn({ reason, suppressed: window.suppressed }, `${window.suppressed} more refusals (${reason}) in the last second were not logged`);
  }
}
