import type { FleetView } from './fleet-view.js';
import type { Overview, RefusalRecord, ServiceView, TunnelRecord } from './overview.js';
import { openFileDescriptors } from './process-figures.js';
import type { RelayStats } from './stats.js';

/** The relay as a whole, as `GET /api/relay` shows it. */
export interface RelayView {
  /** Milliseconds since the epoch: the relay's start (its master's, under ./relay), upgrades notwithstanding. */
  startedAt: number;
  uptimeSeconds: number;
  /** Milliseconds since the epoch: the start of the process serving now (a worker's, after an upgrade). */
  workerStartedAt: number;
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
function dialbackQuantileMs(stats: RelayStats, q: number): number | null {
  if (stats.dialbackCount === 0) return null;
  const wanted = q * stats.dialbackCount;
  let cumulative = 0;
  for (const [i, bound] of stats.dialbackBuckets.entries()) {
    cumulative += stats.dialbackCounts[i] ?? 0;
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
      p50Ms: dialbackQuantileMs(stats, 0.5),
      p99Ms: dialbackQuantileMs(stats, 0.99),
    },
    memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed },
    openFds: Number.isNaN(fds) ? null : fds,
  };
}

/** The JSON endpoints under /api/, by path: each costs the number of services at most. */
export function apiRoutes(stats: RelayStats, overview: Overview, fleet?: () => FleetView): Map<string, () => unknown> {
  const overviewSnapshot = (): OverviewSnapshot => ({
    now: Date.now(),
    relay: relayView(stats, overview),
    services: overview.services(),
    recentTunnels: overview.recentTunnels(),
    recentRefusals: overview.recentRefusals(),
    fleet: fleet?.() ?? null,
  });
  return new Map<string, () => unknown>([
    ['/api/overview', overviewSnapshot],
    ['/api/relay', () => relayView(stats, overview)],
    ['/api/services', () => overview.services()],
    ['/api/tunnels', () => overview.recentTunnels()],
    ['/api/refusals', () => overview.recentRefusals()],
  ]);
}
