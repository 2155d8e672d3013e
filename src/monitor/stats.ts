import { randomUUID } from 'node:crypto';
import type { SpliceCounts } from '../net/splice.js';
import { startedAt } from './process-figures.js';
import type { RefusalReason } from './refusal-reasons.js';
import type { TenantFigures } from '../access/tenancy.js';

/** Figures the relay's parts hold themselves, read when asked, never counted twice. */
export interface LiveFigures {
  servicesActive(): number;
  tunnelsOpen(): number;
}

const NOTHING_LIVE: LiveFigures = { servicesActive: () => 0, tunnelsOpen: () => 0 };

/** The plain counters a successor carries on (gauges, figures of now, do not carry over). */
const CARRIED_COUNTERS = [
  'servicesRegistered',
  'tunnelsOpened',
  'reservationsEvicted',
  'tunnelsIdleTimedOut',
  'stateWriteErrors',
  'probeFailures',
  'dialbackCount',
  'dialbackSumSeconds',
  'probeCount',
  'probeSumSeconds',
  'poolRetries',
  'namesClientsPassed',
] as const;
type CarriedCounter = (typeof CARRIED_COUNTERS)[number];

/**
 * One worker's counters, flat: `tunnelsOpened`, `bytes.a`, `refusal.<reason>`,
 * `dialback.<bucket>`, `probe.<bucket>`. Flat so that adding, subtracting and merging
 * are one loop, and it crosses the IPC channel as it is.
 */
export type Figures = Record<string, number>;

/**
 * What a worker hands its successor at an upgrade: its own figures and those of every
 * worker before it, by worker id. Each entry only grows, so one that arrives twice, or
 * once directly and once through another worker, is merged (the larger wins), never
 * added twice.
 */
export type FigureLedger = Record<string, Figures>;

function combine(a: Figures, b: Figures, op: (x: number, y: number) => number): Figures {
  const out: Figures = { ...a };
  for (const [key, value] of Object.entries(b)) if (Number.isFinite(value)) out[key] = op(out[key] ?? 0, value);
  return out;
}

/** One pool's members by state (docs/protocol.md §17). */
export interface PoolFigures {
  port: number;
  ready: number;
  unhealthy: number;
  draining: number;
}

/** Counters the relay keeps for logs and metrics; plain numbers, updated in place. */
export class RelayStats {
  readonly #live: LiveFigures;
  servicesRegistered = 0;
  /** Prewarmed data connections parked, waiting for a client. */
  warmIdle = 0;
  tunnelsOpened = 0;
  /** Public clients waiting at the door of a service that is away. */
  clientsHeld = 0;
  /** Public clients taken by a service (tunnel open or dial-back pending), for --max-tunnels. */
  clientsTaken = 0;
  /** Reservations of departed services ended early so a newcomer could have a port. */
  reservationsEvicted = 0;
  /** Tunnels reset by --idle-timeout. */
  tunnelsIdleTimedOut = 0;
  /** Writes of the state file (--state) that failed. */
  stateWriteErrors = 0;
  /** Bytes from public clients (a) and to them (b), open tunnels included; the splices add to it live. */
  readonly bytes: SpliceCounts = { a: 0, b: 0 };
  readonly refusals = new Map<RefusalReason, number>();
  /** More /metrics lines from a part loaded only when configured (a fleet node's etcd figures). */
  extraMetrics: (() => string) | undefined;
  /** Dial-back latency: counts of observations at or below each bound, in seconds. */
  readonly dialbackBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
  readonly dialbackCounts: number[] = new Array<number>(this.dialbackBuckets.length).fill(0);
  dialbackCount = 0;
  dialbackSumSeconds = 0;
  /** End-to-end probes (PROBE to dial-back) that succeeded, by latency; same buckets as dial-backs. */
  readonly probeCounts: number[] = new Array<number>(this.dialbackBuckets.length).fill(0);
  probeCount = 0;
  probeSumSeconds = 0;
  /** Probes that got no dial-back in time, over all services. */
  probeFailures = 0;
  /** Services whose latest probe failed, now. */
  servicesProbeFailing = 0;
  /** Public clients a pool offered to another member after one failed them before the first byte. */
  poolRetries = 0;
  /** Names-port clients passed to the worker serving their name (with several workers). */
  namesClientsPassed = 0;
  /** Each pool's members now, by state, by public port. */
  poolFigures: () => readonly PoolFigures[] = () => [];
  /** With --tenants: what each tenant uses now (one entry per tenant of the file, so bounded). */
  tenantFigures: () => readonly TenantFigures[] = () => [];
  /**
   * When the relay started, in seconds since the epoch: this process's start, or, in a
   * worker, its master's (an upgrade is invisible to operators too).
   */
  startedAt = startedAt;
  /** This process's start, in seconds since the epoch (a worker's own, after an upgrade). */
  readonly processStartedAt = startedAt;
  /** Names this relay's figures in a ledger (a pid could be reused by a later worker). */
  readonly #id = randomUUID();
  /** The latest figures of each worker before this one, by id. */
  readonly #ledger = new Map<string, Figures>();
  /** The sum of the ledger: already added to the counters above, and not this worker's own. */
  #inherited: Figures = {};
  /** Bytes of earlier workers: kept apart from `bytes`, whose rate the dashboard samples. */
  readonly #carriedBytes: SpliceCounts = { a: 0, b: 0 };

  constructor(live: LiveFigures = NOTHING_LIVE) {
    this.#live = live;
  }

  /** Services registered now. */
  get servicesActive(): number {
    return this.#live.servicesActive();
  }

  /** Tunnels (a public client spliced with a data connection) open now. */
  get tunnelsOpen(): number {
    return this.#live.tunnelsOpen();
  }

  /** Public clients the relay has open, held or taken: what --max-tunnels caps. */
  get publicClients(): number {
    return this.clientsTaken + this.clientsHeld;
  }

  get bytesFromClients(): number {
    return this.bytes.a + this.#carriedBytes.a;
  }

  get bytesToClients(): number {
    return this.bytes.b + this.#carriedBytes.b;
  }

  /** For a successor: this relay's own counters and every earlier worker's. */
  figuresToCarry(): FigureLedger {
    return { ...Object.fromEntries(this.#ledger), [this.#id]: combine(this.#flat(), this.#inherited, (x, y) => x - y) };
  }

  /** Adds what a predecessor carried (see FigureLedger) to these counters. */
  carryOver(ledger: FigureLedger): void {
    for (const [id, figures] of Object.entries(ledger)) {
      if (id === this.#id) continue;
      const before = this.#ledger.get(id) ?? {};
      const after = combine(before, figures, Math.max);
      this.#ledger.set(id, after);
      const added = combine(after, before, (x, y) => x - y);
      this.#inherited = combine(this.#inherited, added, (x, y) => x + y);
      this.#add(added);
    }
  }

  /** Every carried counter, flat, earlier workers' included. */
  #flat(): Figures {
    const flat: Figures = { 'bytes.a': this.bytesFromClients, 'bytes.b': this.bytesToClients };
    for (const name of CARRIED_COUNTERS) flat[name] = this[name];
    for (const [reason, count] of this.refusals) flat[`refusal.${reason}`] = count;
    this.dialbackCounts.forEach((count, i) => (flat[`dialback.${i}`] = count));
    this.probeCounts.forEach((count, i) => (flat[`probe.${i}`] = count));
    return flat;
  }

  #add(figures: Figures): void {
    for (const [key, value] of Object.entries(figures)) {
      const [kind, name = ''] = key.split(/\.(.*)/, 2) as [string, string?];
      const bucket = Number(name);
      if (key === 'bytes.a' || key === 'bytes.b') this.#carriedBytes[name as 'a' | 'b'] += value;
      else if (kind === 'refusal') this.refusals.set(name as RefusalReason, (this.refusals.get(name as RefusalReason) ?? 0) + value);
      else if (kind === 'dialback' && bucket < this.dialbackCounts.length) this.dialbackCounts[bucket]! += value;
      else if (kind === 'probe' && bucket < this.probeCounts.length) this.probeCounts[bucket]! += value;
      else if ((CARRIED_COUNTERS as readonly string[]).includes(key)) this[key as CarriedCounter] += value;
    }
  }

  refused(reason: RefusalReason): void {
    this.refusals.set(reason, (this.refusals.get(reason) ?? 0) + 1);
  }

  observeDialback(seconds: number): void {
    this.dialbackCount++;
    this.dialbackSumSeconds += seconds;
    this.#count(this.dialbackCounts, seconds);
  }

  observeProbe(seconds: number): void {
    this.probeCount++;
    this.probeSumSeconds += seconds;
    this.#count(this.probeCounts, seconds);
  }

  #count(counts: number[], seconds: number): void {
    const index = this.dialbackBuckets.findIndex((bound) => seconds <= bound);
    if (index >= 0) counts[index]! += 1;
  }
}
