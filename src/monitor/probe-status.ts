/**
 * What the relay knows of one service's data path. `not-probed`: the service did not
 * list `probe` (or probes are off), so nothing is known, and nothing is wrong either.
 * `pending`: probed, no result yet. Then `ok` or `failing` after each probe.
 */
export interface ProbeStatus {
  readonly state: 'not-probed' | 'pending' | 'ok' | 'failing';
  /** Clock time (ms since the epoch) of the latest result. */
  readonly lastAt?: number;
  /** Seconds from PROBE to the dial-back, for the latest probe that succeeded. */
  readonly lastSeconds?: number;
  /** Probes failed in a row; 0 once one succeeds. */
  readonly failuresInARow: number;
  /** Why the latest probe failed, while failing. */
  readonly reason?: string;
}

export const NOT_PROBED: ProbeStatus = { state: 'not-probed', failuresInARow: 0 };
