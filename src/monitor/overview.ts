import type { SpliceCounts } from '../net/splice.js';
import { joinHostPort, plainAddress } from '../protocol/addresses.js';
import { RateHistory } from './rate-history.js';
import { Ring } from './ring.js';
import type { ProbeStatus } from './probe-status.js';
import type { RefusalReason } from './refusal-reasons.js';

/** Closed tunnels and refusals remembered for the dashboard. */
export const RECENT_LIMIT = 100;

/**
 * One service's figures for the dashboard: made at its registration, kept by its
 * session, added to by its tunnels' splices. They are the session's, so they go when
 * it goes, and nothing has to be kept in step with it.
 */
export class ServiceFigures {
  readonly publicAddress: string;
  readonly publicPort: number;
  /** Registered at, milliseconds since the epoch. */
  readonly since = Date.now();
  readonly tenant: string | undefined;
  tunnelsOpen = 0;
  /** Live byte totals of this service's tunnels; the splices add to it. */
  readonly bytes: SpliceCounts = { a: 0, b: 0 };
  /** The totals each of its tunnels adds to (the relay's and this service's), shared by all of them. */
  readonly totals: readonly SpliceCounts[];
  readonly rates = new RateHistory(this.bytes);

  constructor(relayBytes: SpliceCounts, publicHost: string, publicPort: number, tenant: string | undefined) {
    this.publicAddress = joinHostPort(publicHost, publicPort);
    this.publicPort = publicPort;
    this.tenant = tenant;
    this.totals = [relayBytes, this.bytes];
  }
}

/** What the overview reads from a registered service, cheaply, whenever it is asked. */
export interface WatchedService {
  readonly id: string;
  /** Public clients waiting for the service to dial back. */
  readonly waiting: number;
  /** What the end-to-end probes say of its data path. */
  readonly probe: ProbeStatus;
  readonly figures: ServiceFigures;
  /** A pool: the members serving its address now (none while every member is away). */
  members?(): WatchedMember[];
}

/** What a pool member is for new clients: ready; unhealthy (its target is down, or its probe fails); draining. */
export type MemberState = 'ready' | 'unhealthy' | 'draining';

/** One member of a pool, as the overview reads it. */
export interface WatchedMember {
  readonly id: string;
  /** Its control connection's address:port. */
  readonly peer: string;
  readonly state: MemberState;
  readonly tunnelsOpen: number;
  readonly waiting: number;
  readonly probe: ProbeStatus;
}

/** A pool member as the API shows it. */
export interface MemberView {
  id: string;
  peer: string;
  state: MemberState;
  tunnelsOpen: number;
  waiting: number;
  probe: ProbeView;
}

/** A service as the registrar lists it: registered now, or away with its port kept (`held`). */
export interface ListedService {
  readonly service: WatchedService;
  readonly held: boolean;
}

/** A closed tunnel: the access log line's fields. */
export interface ClosedTunnel {
  client: string | undefined;
  bytesFromClient: number;
  bytesToClient: number;
  durationMs: number;
  closedBy: 'client' | 'service' | 'relay';
  outcome: string;
  error?: string;
}

/** Which service a tunnel belongs to. */
export interface TunnelOwner {
  readonly id: string;
  readonly port: number;
  readonly figures: ServiceFigures;
}

export interface TunnelRecord extends ClosedTunnel {
  service: string;
  publicPort: number;
  closedAt: number;
}

export interface RefusalRecord {
  at: number;
  reason: RefusalReason;
  /** The refused peer's address, when it had one. */
  peer: string | undefined;
  message: string;
}

export interface ServiceView {
  id: string;
  publicAddress: string;
  publicPort: number;
  /** Registered at, milliseconds since the epoch. */
  since: number;
  tunnelsOpen: number;
  waiting: number;
  bytesFromClients: number;
  bytesToClients: number;
  /** Bytes a second, latest sample. */
  rate: { fromClients: number; toClients: number };
  /** Bytes a second, one sample a second, oldest first. */
  history: { fromClients: number[]; toClients: number[] };
  tenant: string | null;
  /** Disconnected, but its port is still kept for it (within its resume grace). */
  held: boolean;
  probe: ProbeView;
  /** A pool (docs/protocol.md §17): its members, each with its state; null for a service of one process. */
  members: MemberView[] | null;
}

/**
 * The end-to-end probe of a service's data path, as the API shows it. `not-probed`:
 * the service did not announce the feature (or --probe is 0), which says nothing bad.
 */
export interface ProbeView {
  state: ProbeStatus['state'];
  /** When the latest probe result came, ms since the epoch; null before the first. */
  lastAt: number | null;
  /** Dial-back latency of the latest probe that succeeded, in ms. */
  latencyMs: number | null;
  failuresInARow: number;
  /** Why the latest probe failed, while failing. */
  reason: string | null;
}

function probeView(status: ProbeStatus): ProbeView {
  return {
    state: status.state,
    lastAt: status.lastAt ?? null,
    latencyMs: status.lastSeconds === undefined ? null : status.lastSeconds * 1000,
    failuresInARow: status.failuresInARow,
    reason: status.state === 'failing' ? (status.reason ?? null) : null,
  };
}

/**
 * What the dashboard and `relay status` show: the services as the registrar lists them
 * (each with its own figures), and the tunnels and refusals of late, remembered as they
 * happen. Reading it costs the number of services, never the number of tunnels. Holds
 * no keys, tokens or secrets: only what may be shown.
 */
export class Overview {
  readonly #list: () => Iterable<ListedService>;
  readonly #tunnels = new Ring<TunnelRecord>(RECENT_LIMIT);
  readonly #refusals = new Ring<RefusalRecord>(RECENT_LIMIT);
  readonly #relayRates: RateHistory;
  readonly #relayBytes: SpliceCounts;
  #lastSample = performance.now();

  /** `relayBytes`: the relay's own live byte totals, sampled for its rate; `list`: the services to show now. */
  constructor(relayBytes: SpliceCounts, list: () => Iterable<ListedService>) {
    this.#relayBytes = relayBytes;
    this.#relayRates = new RateHistory(relayBytes);
    this.#list = list;
  }

  /** The figures of a service registering now, on `publicHost:publicPort`. */
  figuresFor(publicHost: string, publicPort: number, tenant: string | undefined): ServiceFigures {
    return new ServiceFigures(this.#relayBytes, publicHost, publicPort, tenant);
  }

  /**
   * Counts a new tunnel; returns the running totals its splice should add its bytes to
   * (the relay's and its service's: one array per service, not per tunnel).
   */
  tunnelOpened(owner: TunnelOwner): readonly SpliceCounts[] {
    owner.figures.tunnelsOpen++;
    return owner.figures.totals;
  }

  tunnelClosed(owner: TunnelOwner, closed: ClosedTunnel): void {
    owner.figures.tunnelsOpen--;
    this.#tunnels.push({ service: owner.id, publicPort: owner.port, closedAt: Date.now(), ...closed });
  }

  refused(reason: RefusalReason, fields: Record<string, unknown>, message: string): void {
    const address = fields['peer'] ?? fields['client'];
    const peer = typeof address === 'string' ? plainAddress(address) : undefined;
    this.#refusals.push({ at: Date.now(), reason, peer, message });
  }

  /** Takes a rate sample of every service and the relay; call about once a second. */
  sample(): void {
    const now = performance.now();
    const elapsed = Math.max((now - this.#lastSample) / 1000, 0.001);
    this.#lastSample = now;
    this.#relayRates.sample(elapsed);
    for (const { service } of this.#list()) service.figures.rates.sample(elapsed);
  }

  get relayRates(): RateHistory {
    return this.#relayRates;
  }

  services(): ServiceView[] {
    return [...this.#list()].map(({ service, held }) => {
      const { figures } = service;
      return {
        id: service.id,
        publicAddress: figures.publicAddress,
        publicPort: figures.publicPort,
        since: figures.since,
        tunnelsOpen: figures.tunnelsOpen,
        waiting: service.waiting,
        bytesFromClients: figures.bytes.a,
        bytesToClients: figures.bytes.b,
        rate: figures.rates.rate,
        history: figures.rates.history,
        tenant: figures.tenant ?? null,
        held,
        probe: probeView(service.probe),
        members: service.members?.().map((member) => ({ ...member, probe: probeView(member.probe) })) ?? null,
      };
    });
  }

  /** Newest first. */
  recentTunnels(): TunnelRecord[] {
    return this.#tunnels.newest();
  }

  /** Newest first. */
  recentRefusals(): RefusalRecord[] {
    return this.#refusals.newest();
  }
}
