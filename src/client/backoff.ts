import { MAX_TIMER_MS } from '../config/rules.js';

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** Fraction of the delay that is randomised, so many services do not reconnect in step. */
  jitter: number;
}

/** Delay before reconnect attempt `attempt` (0-based): doubling, jittered, never above maxMs. */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxMs, MAX_TIMER_MS);
  const base = Math.min(cap, policy.initialMs * 2 ** Math.min(attempt, 30));
  const spread = base * policy.jitter;
  return Math.min(cap, Math.max(0, Math.round(base - spread + 2 * spread * random())));
}
