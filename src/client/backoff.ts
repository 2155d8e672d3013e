export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** Fraction of the delay that is randomised, so many services do not reconnect in step. */
  jitter: number;
}

/** Delay before reconnect attempt `attempt` (0-based): doubling, capped, jittered. */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const base = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(attempt, 30));
  const spread = base * policy.jitter;
  return Math.max(0, Math.round(base - spread + 2 * spread * random()));
}
