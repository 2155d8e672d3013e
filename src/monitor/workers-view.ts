import { dialbackQuantileMs, type OverviewSnapshot, type RelayView } from './api.js';
import type { FleetView } from './fleet-view.js';
import { RECENT_LIMIT } from './overview.js';

/**
 * One worker's figures, as the worker that serves `--metrics` gathers them from its
 * siblings (`--workers N`): its overview (what /api/ shows), its /metrics text, and its
 * dial-back histogram, from which the relay's quantiles are computed again.
 */
export interface WorkerSnapshot {
  overview: OverviewSnapshot;
  metrics: string;
  dialback: { counts: number[]; sumSeconds: number };
}

/** Series where a sum would mean nothing: the relay's start is its oldest worker's, the fleet's size any worker's. */
const NOT_SUMMED: Record<string, (a: number, b: number) => number> = {
  process_start_time_seconds: Math.min,
  relay_worker_start_time_seconds: Math.max,
  relay_fleet_nodes: Math.max,
};

/**
 * The relay as one: every worker's figures together. Counters and gauges are summed by
 * series (name and labels), services and recent tunnels and refusals listed from every
 * worker; `bounds` are the dial-back histogram's.
 */
export function mergeSnapshots(own: WorkerSnapshot, others: readonly WorkerSnapshot[], bounds: readonly number[]): WorkerSnapshot {
  const all = [own, ...others];
  const counts = bounds.map((_, i) => sum(all.map((s) => s.dialback.counts[i] ?? 0)));
  const sumSeconds = sum(all.map((s) => s.dialback.sumSeconds));
  const overview: OverviewSnapshot = {
    now: own.overview.now,
    relay: mergeRelayViews(
      all.map((s) => s.overview.relay),
      bounds,
      counts,
      sumSeconds,
    ),
    services: all.flatMap((s) => s.overview.services).sort((a, b) => a.since - b.since),
    recentTunnels: newest(all.flatMap((s) => s.overview.recentTunnels)),
    recentRefusals: newest(all.flatMap((s) => s.overview.recentRefusals)),
    fleet: mergeFleetViews(all.map((s) => s.overview.fleet)),
  };
  const metrics = mergeMetricsText(all.map((s) => s.metrics)) + workersLine(all.length);
  return { overview, metrics, dialback: { counts, sumSeconds } };
}

/**
 * The node's view of its fleet: each worker reads etcd itself, so a peer any of them has
 * seen is listed, etcd is reachable only if every worker reaches it, and the last error
 * is the latest of any.
 */
function mergeFleetViews(views: (FleetView | null)[]): FleetView | null {
  const [first, ...rest] = views.filter((view): view is FleetView => view !== null);
  if (first === undefined) return null;
  const all = [first, ...rest];
  const failed = all.filter((view) => view.etcd.lastErrorAt !== null).sort((a, b) => b.etcd.lastErrorAt! - a.etcd.lastErrorAt!)[0];
  return {
    node: first.node,
    address: first.address,
    peers: [...new Set(all.flatMap((view) => view.peers))].sort(),
    etcd: { reachable: all.every((view) => view.etcd.reachable), lastError: failed?.etcd.lastError ?? null, lastErrorAt: failed?.etcd.lastErrorAt ?? null },
  };
}

function workersLine(count: number): string {
  return `# HELP relay_workers Workers whose figures this answer adds up (one that did not answer in time is left out).\n# TYPE relay_workers gauge\nrelay_workers ${count}\n`;
}

const sum = (values: readonly number[]): number => values.reduce((total, value) => total + value, 0);

/** Newest first, as many as one worker keeps. */
function newest<T extends { closedAt: number } | { at: number }>(records: T[]): T[] {
  const at = (record: T): number => ('closedAt' in record ? record.closedAt : record.at);
  return records.sort((a, b) => at(b) - at(a)).slice(0, RECENT_LIMIT);
}

/** Rates and histories added sample by sample, the newest samples aligned. */
function addSeries(series: readonly number[][]): number[] {
  const length = Math.max(0, ...series.map((s) => s.length));
  const total = new Array<number>(length).fill(0);
  for (const s of series) s.forEach((value, i) => (total[length - s.length + i]! += value));
  return total;
}

function mergeRelayViews(views: RelayView[], bounds: readonly number[], counts: number[], sumSeconds: number): RelayView {
  const add = (pick: (view: RelayView) => number): number => sum(views.map(pick));
  const refusals: Record<string, number> = {};
  for (const view of views) for (const [reason, count] of Object.entries(view.refusals)) refusals[reason] = (refusals[reason] ?? 0) + count;
  const count = sum(counts);
  const fds = views.map((view) => view.openFds);
  return {
    startedAt: Math.min(...views.map((view) => view.startedAt)),
    uptimeSeconds: Math.max(...views.map((view) => view.uptimeSeconds)),
    workerStartedAt: Math.max(...views.map((view) => view.workerStartedAt)),
    workers: views.length,
    services: add((view) => view.services),
    tunnelsOpen: add((view) => view.tunnelsOpen),
    tunnelsOpened: add((view) => view.tunnelsOpened),
    warmIdle: add((view) => view.warmIdle),
    bytesFromClients: add((view) => view.bytesFromClients),
    bytesToClients: add((view) => view.bytesToClients),
    rate: { fromClients: add((view) => view.rate.fromClients), toClients: add((view) => view.rate.toClients) },
    history: { fromClients: addSeries(views.map((view) => view.history.fromClients)), toClients: addSeries(views.map((view) => view.history.toClients)) },
    refusals,
    dialback: {
      count,
      meanMs: count === 0 ? null : (sumSeconds / count) * 1000,
      p50Ms: dialbackQuantileMs(bounds, counts, count, 0.5),
      p99Ms: dialbackQuantileMs(bounds, counts, count, 0.99),
    },
    memory: { rssBytes: add((view) => view.memory.rssBytes), heapUsedBytes: add((view) => view.memory.heapUsedBytes) },
    openFds: fds.includes(null) ? null : sum(fds as number[]),
  };
}

interface Family {
  comments: string[];
  /** Series line up to its value (`name{labels}`) -> the value, in first-seen order. */
  series: Map<string, number>;
}

/**
 * Prometheus texts of several workers as one: each family once (its HELP and TYPE
 * lines, then its series), every series' values combined (summed, but for NOT_SUMMED).
 */
export function mergeMetricsText(texts: readonly string[]): string {
  const families = new Map<string, Family>();
  for (const text of texts) {
    let family: Family | undefined;
    for (const line of text.split('\n')) {
      const comment = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (comment !== null) {
        const name = comment[2]!;
        family = families.get(name) ?? { comments: [], series: new Map() };
        families.set(name, family);
        if (family.comments.length < 2 && !family.comments.includes(line)) family.comments.push(line);
        continue;
      }
      const cut = line.lastIndexOf(' ');
      if (line === '' || line.startsWith('#') || cut < 0 || family === undefined) continue;
      const series = line.slice(0, cut);
      const value = Number(line.slice(cut + 1));
      const name = series.replace(/\{.*$/, '');
      const before = family.series.get(series);
      family.series.set(series, before === undefined ? value : (NOT_SUMMED[name] ?? ((a, b) => a + b))(before, value));
    }
  }
  const lines: string[] = [];
  for (const family of families.values()) {
    lines.push(...family.comments);
    for (const [series, value] of family.series) lines.push(`${series} ${value}`);
  }
  return lines.join('\n') + '\n';
}
