import type { OverviewSnapshot } from '../monitor/api.js';
import type { FleetView } from '../monitor/fleet-view.js';
import type { ProbeView } from '../monitor/overview.js';

/** Rows of each recent list shown in a terminal; the API keeps more. */
const RECENT_ROWS = 10;

/** Text from the network may hold escape sequences: a terminal must only get printable ASCII. */
const printable = (text: string): string => text.replace(/[^\x20-\x7e]/g, '?');

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)}s`;
  const [d, h, m] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60];
  if (d > 0) return `${d}d${String(h).padStart(2, '0')}h`;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  return `${m}m${String(s % 60).padStart(2, '0')}s`;
}

const clock = (ms: number): string => new Date(ms).toTimeString().slice(0, 8);
const rate = (bytesPerSecond: number): string => `${formatBytes(bytesPerSecond)}/s`;
const orDash = (value: number | null, unit: string): string => (value === null ? '-' : `${value} ${unit}`);

/** Columns padded to their widest cell; every cell made printable. */
export function table(headers: string[], rows: string[][]): string {
  const cells = [headers, ...rows].map((row) => row.map(printable));
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => row[i]?.length ?? 0)));
  return cells.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** A fleet node's line: the node, its peers, and whether etcd answers (with its last error). */
export function fleetText(fleet: FleetView): string {
  const peers = fleet.peers.length === 0 ? 'no peers' : `${fleet.peers.length} peer${fleet.peers.length === 1 ? '' : 's'} ${fleet.peers.join(', ')}`;
  const { reachable, lastError, lastErrorAt } = fleet.etcd;
  const error = lastError === null ? '' : `${reachable ? ', last error' : ':'} ${lastErrorAt === null ? '' : `${clock(lastErrorAt)} `}${lastError}`;
  return `node ${fleet.node} at ${fleet.address}, ${peers}; etcd ${reachable ? 'reachable' : 'UNREACHABLE'}${error}`;
}

function relaySummary({ relay, fleet }: OverviewSnapshot): string {
  const refusals = Object.entries(relay.refusals).map(([reason, n]) => `${reason} ${n}`);
  const { dialback } = relay;
  return [
    `relay      up ${formatDuration(relay.uptimeSeconds * 1000)}, ${relay.services} services, ${relay.tunnelsOpen} tunnels open (${relay.tunnelsOpened} since start), ${relay.warmIdle} warm`,
    `bytes      in ${formatBytes(relay.bytesFromClients)} (${rate(relay.rate.fromClients)}), out ${formatBytes(relay.bytesToClients)} (${rate(relay.rate.toClients)})`,
    `dial-back  ${dialback.count} observed, mean ${dialback.meanMs === null ? '-' : `${dialback.meanMs.toFixed(1)} ms`}, p50 <= ${orDash(dialback.p50Ms, 'ms')}, p99 <= ${orDash(dialback.p99Ms, 'ms')}`,
    `process    rss ${formatBytes(relay.memory.rssBytes)}, heap ${formatBytes(relay.memory.heapUsedBytes)}, ${relay.openFds ?? '?'} open fds`,
    `refusals   ${refusals.length === 0 ? 'none' : refusals.join(', ')}`,
    // Absent from a relay older than this command, null on a single relay.
    ...(fleet === undefined || fleet === null ? [] : [`fleet      ${fleetText(fleet)}`]),
  ]
    .map(printable)
    .join('\n');
}

const latency = (ms: number): string => `${ms < 10 ? ms.toFixed(1) : Math.round(ms)}ms`;

/** The end-to-end probe in a few words; a service that did not announce probes is not a failure. */
export function probeText(probe: ProbeView): string {
  switch (probe.state) {
    case 'ok':
      return probe.latencyMs === null ? 'ok' : `ok ${latency(probe.latencyMs)}`;
    case 'failing':
      return `failing x${probe.failuresInARow}: ${probe.reason ?? 'unknown'}`;
    case 'pending':
      return 'pending';
    case 'not-probed':
      return 'not probed';
  }
}

function servicesTable({ services, now }: OverviewSnapshot): string {
  if (services.length === 0) return 'SERVICES\n(none registered)';
  const tenants = services.some((s) => s.tenant !== null);
  const headers = ['PUBLIC ADDRESS', 'UP', 'TUNNELS', 'WAITING', 'IN', 'OUT', 'IN/S', 'OUT/S', ...(tenants ? ['TENANT'] : []), 'STATE', 'PROBE'];
  const rows = services.flatMap((s) => [
    [
      s.publicAddress,
      formatDuration(now - s.since),
      String(s.tunnelsOpen),
      String(s.waiting),
      formatBytes(s.bytesFromClients),
      formatBytes(s.bytesToClients),
      rate(s.rate.fromClients),
      rate(s.rate.toClients),
      ...(tenants ? [s.tenant ?? '-'] : []),
      s.held ? 'held' : s.members === undefined || s.members === null ? 'live' : `pool of ${s.members.length}`,
      probeText(s.probe),
    ],
    // A pool's members, one line each, under its address (absent from a relay older than pools).
    ...(s.members ?? []).map((m) => [`  member ${m.peer}`, '', String(m.tunnelsOpen), String(m.waiting), '', '', '', '', ...(tenants ? [''] : []), m.state, probeText(m.probe)]),
  ]);
  return `SERVICES\n${table(headers, rows)}`;
}

function recentTunnelsTable({ recentTunnels }: OverviewSnapshot): string {
  const title = `RECENT TUNNELS (newest first)`;
  if (recentTunnels.length === 0) return `${title}\n(none closed yet)`;
  const rows = recentTunnels
    .slice(0, RECENT_ROWS)
    .map((t) => [
      clock(t.closedAt),
      String(t.publicPort),
      t.client ?? '-',
      formatDuration(t.durationMs),
      formatBytes(t.bytesFromClient),
      formatBytes(t.bytesToClient),
      t.closedBy,
      t.error === undefined ? t.outcome : `${t.outcome} (${t.error})`,
    ]);
  return `${title}\n${table(['CLOSED', 'PORT', 'CLIENT', 'DURATION', 'IN', 'OUT', 'CLOSED BY', 'OUTCOME'], rows)}`;
}

function recentRefusalsTable({ recentRefusals }: OverviewSnapshot): string {
  const title = `RECENT REFUSALS (newest first)`;
  if (recentRefusals.length === 0) return `${title}\n(none)`;
  const rows = recentRefusals.slice(0, RECENT_ROWS).map((r) => [clock(r.at), r.reason, r.peer ?? '-', r.message]);
  return `${title}\n${table(['AT', 'REASON', 'PEER', 'MESSAGE'], rows)}`;
}

/** The overview as the terminal shows it: the relay, its services, then what happened last. */
export function renderStatus(snapshot: OverviewSnapshot): string {
  return [relaySummary(snapshot), servicesTable(snapshot), recentTunnelsTable(snapshot), recentRefusalsTable(snapshot)].join('\n\n') + '\n';
}
