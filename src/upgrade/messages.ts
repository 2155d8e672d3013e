/**
 * The messages between the master process and a relay worker (over the cluster IPC
 * channel). Written down once so both sides agree; the master stays small because it
 * only ever reads `kind` and passes the rest along.
 */

import type { LeaseRecord, Place } from '../leases/lease-store.js';
import type { FigureLedger } from '../monitor/stats.js';

export interface ListeningPorts {
  control: number;
  data: number;
  metrics?: number;
}

/** Master → worker. A `held-client` or `dial-back` carries its socket as the IPC handle. */
export type ToWorker =
  /**
   * `ports`, when given, replace the configured port 0s: a restart keeps the ports it had.
   * `startedAt`: the master's start (ms since the epoch), the relay's uptime for operators.
   */
  | { kind: 'start'; leases: LeaseRecord[]; predecessor: boolean; ports?: ListeningPorts; startedAt: number }
  | { kind: 'prepare' }
  | { kind: 'abort' }
  | { kind: 'retire' }
  | { kind: 'leases'; leases: LeaseRecord[] }
  /** A retiring worker's counters (at the handover, and once more when it has drained), for its successor. */
  | { kind: 'figures'; figures: FigureLedger }
  | { kind: 'predecessor-gone' }
  | { kind: 'stop'; signal: string }
  | { kind: 'stop-now'; signal: string }
  | { kind: 'held-client'; /** A public port, or a host on the names ports. */ port: Place; head: string }
  | { kind: 'dial-back'; token: string; head: string }
  /** SIGHUP reached the master: read the tenants file again. */
  | { kind: 'reload' };

/** Worker → master. */
export type FromWorker =
  | { kind: 'waiting'; pidFile: string | undefined; log: { level: string; format: 'json' | 'pretty' } }
  | { kind: 'ready'; ports: ListeningPorts }
  | { kind: 'prepared'; leases: LeaseRecord[] }
  | { kind: 'leases'; leases: LeaseRecord[] }
  | { kind: 'figures'; figures: FigureLedger }
  | { kind: 'held-client'; /** A public port, or a host on the names ports. */ port: Place; head: string }
  | { kind: 'dial-back'; token: string; head: string };

export function isFromWorker(value: unknown): value is FromWorker {
  return typeof value === 'object' && value !== null && typeof (value as { kind?: unknown }).kind === 'string';
}
