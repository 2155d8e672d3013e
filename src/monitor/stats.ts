import type { SpliceCounts } from '../net/splice.js';
import type { RefusalReason } from './refusal-reasons.js';
import type { TenantFigures } from '../access/tenancy.js';

/** Figures the relay's parts hold themselves, read when asked, never counted twice. */
export interface LiveFigures {
  servicesActive(): number;
  tunnelsOpen(): number;
}

const NOTHING_LIVE: LiveFigures = { servicesActive: () => 0, tunnelsOpen: () => 0 };

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
  /** With --tenants: what each tenant uses now (one entry per tenant of the file, so bounded). */
  tenantFigures: () => readonly TenantFigures[] = () => [];

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
    return this.bytes.a;
  }

  get bytesToClients(): number {
    return this.bytes.b;
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
