/**
 * The messages between the master process and a relay worker (over the cluster IPC
 * channel). Written down once so both sides agree; the master stays small because it
 * only ever reads `kind` and passes the rest along.
 */

import type { ClaimAnswer, LeaseRecord, Place } from '../leases/lease-store.js';
import type { FigureLedger } from '../monitor/stats.js';
import type { ProxiedEnds } from '../protocol/proxy-parse.js';
import type { WorkerSnapshot } from '../monitor/workers-view.js';

export interface ListeningPorts {
  control: number;
  data: number;
  metrics?: number;
}

/**
 * A worker's place among several (`--workers N`, N > 1): which one it is, of how many.
 * Absent with one worker, which then runs exactly as a relay without siblings.
 */
export interface WorkerSlot {
  index: number;
  count: number;
}

/** A question a worker asks the master's lease authority (one of several workers); answered by `answer` with its id. */
export type LeaseQuestion =
  | { ask: 'claim'; key: string; /** A public port, or a host on the names ports. */ port: Place; tenant?: string }
  | { ask: 'services'; key: string }
  | { ask: 'tenant-keys'; tenant: string; room?: { key: string; max: number } }
  /** The first of these hosts (most specific first) that has a door anywhere, if another worker's: `[host]`, else `[]`. */
  | { ask: 'host'; hosts: string[] }
  /** The worker that serves pool `key` when it is another than the asker, else -1. */
  | { ask: 'pool'; key: string };

/** The answer to a LeaseQuestion of that kind. */
export type LeaseAnswer = ClaimAnswer<Place> | 'moved' | number | string[];

/**
 * Master → worker. A `held-client` or `dial-back` carries its socket as the IPC handle; a
 * held client that came through a trusted load balancer carries what its PROXY header said.
 */
export type ToWorker =
  /**
   * `ports`, when given, replace the configured port 0s: a restart keeps the ports it had.
   * `startedAt`: the master's start (ms since the epoch), the relay's uptime for operators.
   */
  | { kind: 'start'; leases: LeaseRecord[]; predecessor: boolean; ports?: ListeningPorts; startedAt: number; slot?: WorkerSlot }
  | { kind: 'prepare' }
  | { kind: 'abort' }
  | { kind: 'retire' }
  | { kind: 'leases'; leases: LeaseRecord[] }
  /** A retiring worker's counters (at the handover, and once more when it has drained), for its successor. */
  | { kind: 'figures'; figures: FigureLedger }
  | { kind: 'predecessor-gone' }
  | { kind: 'stop'; signal: string }
  | { kind: 'stop-now'; signal: string }
  | { kind: 'held-client'; /** A public port, or a host on the names ports. */ port: Place; head: string; proxied?: ProxiedEnds }
  | { kind: 'dial-back'; token: string; head: string }
  /** A pool member's control connection from another worker: its first bytes, HELLO first, to read again. */
  | { kind: 'member'; head: string }
  /** SIGHUP reached the master: read the tenants file again. */
  | { kind: 'reload' }
  /** The lease authority's answer to the worker's question `id`. */
  | { kind: 'answer'; id: number; answer: LeaseAnswer }
  /** The key registered at another worker, which serves its port now: stop serving it here, hand its held clients over. */
  | { kind: 'moved'; key: string; port: Place }
  /** The key's reservation ends: its tenant's newcomer at another worker needs the room. */
  | { kind: 'evict'; key: string; port: Place }
  /** Each tenant's open public clients at the other workers. */
  | { kind: 'tenant-clients'; elsewhere: [string, number][] }
  /** The worker of slot `from` (it serves --metrics) asks for this one's figures. */
  | { kind: 'figures-ask'; id: number; from: number }
  /** To the asker: how many workers were asked (those serving now). */
  | { kind: 'figures-asked'; id: number; count: number }
  /** To the asker: one sibling's figures. */
  | { kind: 'figures-answer'; id: number; snapshot: WorkerSnapshot };

/** Worker → master. */
export type FromWorker =
  /**
   * `workers`: how many the command line asks for; with several, `graceMs` is
   * --resume-grace and `stateFile` the state file the master keeps for all of them.
   */
  | { kind: 'waiting'; pidFile: string | undefined; log: { level: string; format: 'json' | 'pretty' }; workers: number; graceMs: number; stateFile?: string }
  | { kind: 'ready'; ports: ListeningPorts }
  | { kind: 'prepared'; leases: LeaseRecord[] }
  | { kind: 'leases'; leases: LeaseRecord[] }
  | { kind: 'figures'; figures: FigureLedger }
  | { kind: 'held-client'; /** A public port, or a host on the names ports. */ port: Place; head: string; proxied?: ProxiedEnds }
  | { kind: 'dial-back'; token: string; head: string }
  /** A pool member's control connection for the worker of `slot`, which serves its pool. */
  | { kind: 'member'; slot: number; head: string }
  /** One of several workers asks the lease authority. */
  | { kind: 'ask'; id: number; question: LeaseQuestion }
  /** One of several workers: every lease it has now (its whole share; live ones with `until: null`). */
  | { kind: 'lease-table'; leases: LeaseRecord[] }
  /** One of several workers: its tenants' open public clients now. */
  | { kind: 'tenant-clients'; local: [string, number][] }
  /** The worker serving --metrics wants every other worker's figures. */
  | { kind: 'figures-ask'; id: number }
  /** A worker's figures for the asker, the worker of slot `to`. */
  | { kind: 'figures-answer'; id: number; to: number; snapshot: WorkerSnapshot };

export function isFromWorker(value: unknown): value is FromWorker {
  return typeof value === 'object' && value !== null && typeof (value as { kind?: unknown }).kind === 'string';
}
