import type { SpliceCounts } from '../net/splice.js';
import { joinHostPort, plainAddress } from '../protocol/addresses.js';
import { RateHistory } from './rate-history.js';
import { Ring } from './ring.js';
import type { ProbeStatus } from './probe-status.js';
import type { RefusalReason } from './refusal-reasons.js';

/** Closed tunnels and refusals remembered for the dashboard. */
export const RECENT_LIMIT = 100;

/** What the overview reads from a registered service, cheaply, whenever it is asked. */
export interface WatchedService {
  readonly id: string;
  /** Public clients waiting for the service to dial back. */
  readonly waiting: number;
  /** What the end-to-end probes say of its data path. */
  readonly probe: ProbeStatus;
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

interface ServiceEntry {
  service: WatchedService;
  publicAddress: string;
  publicPort: number;
  since: number;
  tenant: string | undefined;
  held: boolean;
  tunnelsOpen: number;
  /** Live byte totals of this service's tunnels; the splices add to it. */
  bytes: SpliceCounts;
  /** The totals each of its tunnels adds to (the relay's and this service's), shared by all of them. */
  totals: readonly SpliceCounts[];
  rates: RateHistory;
}

/**
 * What the dashboard and `relay status` show, kept up to date by the relay as things
 * happen (a service registers or leaves, a tunnel opens or closes, a connection is
 * refused) so that reading it costs the number of services, never the number of
 * tunnels. Holds no keys, tokens or secrets: only what may be shown.
 */
export class Overview {
  readonly #services = new Map<string, ServiceEntry>();
  readonly #tunnels = new Ring<TunnelRecord>(RECENT_LIMIT);
  readonly #refusals = new Ring<RefusalRecord>(RECENT_LIMIT);
  readonly #relayRates: RateHistory;
  readonly #relayBytes: SpliceCounts;
  /** The totals of a tunnel whose service the overview does not know: the relay's only. */
  readonly #relayTotals: readonly SpliceCounts[];
  #lastSample = performance.now();

  /** `relayBytes`: the relay's own live byte totals, sampled for its rate. */
  constructor(relayBytes: SpliceCounts) {
    this.#relayBytes = relayBytes;
    this.#relayTotals = [relayBytes];
    this.#relayRates = new RateHistory(relayBytes);
  }

  serviceRegistered(service: WatchedService, publicHost: string, publicPort: number, tenant?: string): void {
    const bytes = { a: 0, b: 0 };
    this.#services.set(service.id, {
      service,
      publicAddress: joinHostPort(publicHost, publicPort),
      publicPort,
      since: Date.now(),
      tenant,
      held: false,
      tunnelsOpen: 0,
      bytes,
      totals: [this.#relayBytes, bytes],
      rates: new RateHistory(bytes),
    });
  }

  /** For the relay to mark a departed service whose port it still keeps (and back). */
  setHeld(id: string, held: boolean): void {
    const entry = this.#services.get(id);
    if (entry !== undefined) entry.held = held;
  }

  serviceLeft(id: string): void {
    this.#services.delete(id);
  }

  /**
   * Counts a new tunnel; returns the running totals its splice should add its bytes to
   * (the relay's and its service's: one array per service, not per tunnel).
   */
  tunnelOpened(owner: TunnelOwner): readonly SpliceCounts[] {
    const entry = this.#services.get(owner.id);
    if (entry === undefined) return this.#relayTotals;
    entry.tunnelsOpen++;
    return entry.totals;
  }

  tunnelClosed(owner: TunnelOwner, closed: ClosedTunnel): void {
    const entry = this.#services.get(owner.id);
    if (entry !== undefined) entry.tunnelsOpen--;
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
    for (const entry of this.#services.values()) entry.rates.sample(elapsed);
  }

  get relayRates(): RateHistory {
    return this.#relayRates;
  }

  services(): ServiceView[] {
    return [...this.#services.values()].map((entry) => ({
      id: entry.service.id,
      publicAddress: entry.publicAddress,
      publicPort: entry.publicPort,
      since: entry.since,
      tunnelsOpen: entry.tunnelsOpen,
      waiting: entry.service.waiting,
      bytesFromClients: entry.bytes.a,
      bytesToClients: entry.bytes.b,
      rate: entry.rates.rate,
      history: entry.rates.history,
      tenant: entry.tenant ?? null,
      held: entry.held,
      probe: probeView(entry.service.probe),
    }));
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
