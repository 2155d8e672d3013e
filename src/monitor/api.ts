import type { FleetView } from './fleet-view.js';
import type { Overview, RefusalRecord, ServiceView, TunnelRecord } from './overview.js';
import { openFileDescriptors } from './process-figures.js';
import type { RelayStats } from './stats.js';

/** The relay as a whole, as `GET /api/relay` shows it. */
export interface RelayView {
  /** Milliseconds since the epoch: the relay's start (its master's, under ./relay), upgrades notwithstanding. */
  startedAt: number;
  uptimeSeconds: number;
  /** Milliseconds since the epoch: the start of the process serving now (a worker's, after an upgrade; with several, the latest). */
  workerStartedAt: number;
  /** With several workers (`--workers`): how many these figures add up. */
  workers?: number;
  services: number;
  tunnelsOpen: number;
  tunnelsOpened: number;
  warmIdle: number;
  bytesFromClients: number;
  bytesToClients: number;
  rate: { fromClients: number; toClients: number };
  history: { fromClients: number[]; toClients: number[] };
  refusals: Record<string, number>;
  dialback: { count: number; meanMs: number | null; p50Ms: number | null; p99Ms: number | null };
  memory: { rssBytes: number; heapUsedBytes: number };
  openFds: number | null;
}

/** Everything the dashboard shows, as `GET /api/overview` returns it. */
export interface OverviewSnapshot {
  now: number;
  relay: RelayView;
  services: ServiceView[];
  recentTunnels: TunnelRecord[];
  recentRefusals: RefusalRecord[];
  /** A fleet node's view of its fleet; null on a single relay. */
  fleet: FleetView | null;
}

/**
 * The upper bound, in ms, of the histogram bucket holding quantile q of the dial-back
 * latency; null with no observations or above the largest bucket.
 */
export function dialbackQuantileMs(bounds: readonly number[], counts: readonly number[], count: number, q: number): number | null {
  if (count === 0) return null;
  const wanted = q * count;
  let cumulative = 0;
  for (const [i, bound] of bounds.entries()) {
    cumulative += counts[i] ?? 0;
    if (cumulative >= wanted) return bound * 1000;
  }
  return null;
}

function relayView(stats: RelayStats, overview: Overview): RelayView {
  const memory = process.memoryUsage();
  const fds = openFileDescriptors();
  return {
    startedAt: Math.round(stats.startedAt * 1000),
    uptimeSeconds: Math.max(0, Math.round(Date.now() / 1000 - stats.startedAt)),
    workerStartedAt: Math.round(stats.processStartedAt * 1000),
    services: stats.servicesActive,
    tunnelsOpen: stats.tunnelsOpen,
    tunnelsOpened: stats.tunnelsOpened,
    warmIdle: stats.warmIdle,
    bytesFromClients: stats.bytesFromClients,
    bytesToClients: stats.bytesToClients,
    rate: overview.relayRates.rate,
    history: overview.relayRates.history,
    refusals: Object.fromEntries(stats.refusals),
    dialback: {
      count: stats.dialbackCount,
      meanMs: stats.dialbackCount === 0 ? null : (stats.dialbackSumSeconds / stats.dialbackCount) * 1000,
      p50Ms: dialbackQuantileMs(stats.dialbackBuckets, stats.dialbackCounts, stats.dialbackCount, 0.5),
      p99Ms: dialbackQuantileMs(stats.dialbackBuckets, stats.dialbackCounts, stats.dialbackCount, 0.99),
    },
    memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed },
    openFds: Number.isNaN(fds) ? null : fds,
  };
}

/** Everything the dashboard shows of this process. */
export function overviewSnapshot(stats: RelayStats, overview: Overview, fleet?: () => FleetView): OverviewSnapshot {
  return {
    now: Date.now(),
    relay: relayView(stats, overview),
    services: overview.services(),
    recentTunnels: overview.recentTunnels(),
    recentRefusals: overview.recentRefusals(),
    fleet: fleet?.() ?? null,
  };
}

/** The JSON endpoints under /api/, by path, each a part of the overview (one process's, or every worker's). */
export const API_ROUTES = new Map<string, (snapshot: OverviewSnapshot) => unknown>([
  ['/api/overview', (snapshot) => snapshot],
  ['/api/relay', (snapshot) => snapshot.relay],
  ['/api/services', (snapshot) => snapshot.services],
  ['/api/tunnels', (snapshot) => snapshot.recentTunnels],
  ['/api/refusals', (snapshot) => snapshot.recentRefusals],
]);
