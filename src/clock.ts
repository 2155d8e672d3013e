/**
 * Time as the relay sees it, injected wherever behaviour depends on it (token expiry,
 * holding clients, lease expiry), so unit tests move time by hand instead of waiting.
 * `now()` is wall-clock milliseconds since the epoch: leases are written to disk and
 * must mean the same thing after a restart.
 */
export interface Clock {
  now(): number;
  /**
   * Milliseconds on a clock that never jumps (performance.now() for the system clock):
   * for timeouts measured in the process, which a step of the wall clock must not stretch.
   */
  monotonic(): number;
  /** Runs fn after ms; the timer never keeps the process alive on its own. */
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(timer: Timer | undefined): void;
}

/** An opaque handle from Clock.setTimeout. */
export interface Timer {
  readonly __timer: unique symbol;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref() as unknown as Timer,
  clearTimeout: (timer) => clearTimeout(timer as unknown as NodeJS.Timeout | undefined),
};
