import { openFileDescriptors } from './process-figures.js';
import type { RelayStats } from './stats.js';

type Sample = [name: string, help: string, type: 'counter' | 'gauge', value: number];

/** The relay's figures in Prometheus text exposition format, version 0.0.4. */
export function renderMetrics(stats: RelayStats): string {
  const memory = process.memoryUsage();
  const cpu = process.cpuUsage();
  const samples: Sample[] = [
    ['relay_services', 'Services registered now.', 'gauge', stats.servicesActive],
    ['relay_services_registered_total', 'Registrations accepted since start.', 'counter', stats.servicesRegistered],
    ['relay_tunnels_open', 'Tunnels (public client spliced with a data connection) open now.', 'gauge', stats.tunnelsOpen],
    ['relay_warm_connections', 'Prewarmed data connections parked, waiting for a public client.', 'gauge', stats.warmIdle],
    ['relay_clients_held', 'Public clients waiting at the door of a service that is away (within its grace).', 'gauge', stats.clientsHeld],
    ['relay_reservations_evicted_total', 'Reservations of departed services released early because a new service found no free port.', 'counter', stats.reservationsEvicted],
    ['relay_service_probe_failures_total', 'End-to-end probes of services (PROBE, then a dial-back) that got no dial-back in time.', 'counter', stats.probeFailures],
    ['relay_services_probe_failing', 'Services whose latest end-to-end probe failed.', 'gauge', stats.servicesProbeFailing],
    ['relay_pool_retries_total', 'Public clients offered to another pool member after one failed them before their first byte.', 'counter', stats.poolRetries],
    ['relay_names_clients_passed_total', 'Names-port clients passed to the worker that serves their name (--workers above 1).', 'counter', stats.namesClientsPassed],
    ['relay_state_write_errors_total', 'Failed writes of the --state file.', 'counter', stats.stateWriteErrors],
    ['relay_tunnels_idle_timeout_total', 'Tunnels reset because no byte moved either way for --idle-timeout.', 'counter', stats.tunnelsIdleTimedOut],
    ['relay_tunnels_opened_total', 'Tunnels opened since start.', 'counter', stats.tunnelsOpened],
    ['relay_client_bytes_received_total', 'Bytes from public clients to services, open tunnels included.', 'counter', stats.bytesFromClients],
    ['relay_client_bytes_sent_total', 'Bytes from services to public clients, open tunnels included.', 'counter', stats.bytesToClients],
    ['process_resident_memory_bytes', 'Resident memory size in bytes.', 'gauge', memory.rss],
    ['process_cpu_seconds_total', 'User and system CPU time in seconds.', 'counter', (cpu.user + cpu.system) / 1e6],
    ['process_open_fds', 'Open file descriptors.', 'gauge', openFileDescriptors()],
    // The relay's start: under ./relay its master's, which an upgrade does not restart.
    ['process_start_time_seconds', 'Start time of the relay (its master process) since the epoch, in seconds.', 'gauge', stats.startedAt],
    ['relay_worker_start_time_seconds', 'Start time of the worker process serving now (the latest upgrade or restart) since the epoch, in seconds.', 'gauge', stats.processStartedAt],
    ['nodejs_heap_used_bytes', 'V8 heap in use.', 'gauge', memory.heapUsed],
  ];
  const lines: string[] = [];
  for (const [name, help, type, value] of samples) lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);

  lines.push('# HELP relay_refusals_total Connections refused, by reason.', '# TYPE relay_refusals_total counter');
  for (const [reason, count] of stats.refusals) lines.push(`relay_refusals_total{reason="${reason}"} ${count}`);

  tenantLines(lines, stats);
  poolLines(lines, stats);

  const buckets = stats.dialbackBuckets;
  histogram(lines, 'relay_dialback_seconds', "Time from a public client's arrival to its service's data connection.", buckets, stats.dialbackCounts, stats.dialbackCount, stats.dialbackSumSeconds);
  histogram(
    lines,
    'relay_service_probe_seconds',
    'Time from PROBE to the dial-back, for end-to-end probes that succeeded (all services).',
    buckets,
    stats.probeCounts,
    stats.probeCount,
    stats.probeSumSeconds,
  );
  return lines.join('\n') + '\n' + (stats.extraMetrics?.() ?? '');
}

export function histogram(lines: string[], name: string, help: string, bounds: readonly number[], counts: number[], count: number, sum: number): void {
  lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
  let cumulative = 0;
  bounds.forEach((bound, i) => {
    cumulative += counts[i] ?? 0;
    lines.push(`${name}_bucket{le="${bound}"} ${cumulative}`);
  });
  lines.push(`${name}_bucket{le="+Inf"} ${count}`, `${name}_sum ${sum}`, `${name}_count ${count}`);
}

/** Each pool's members, by state; a pool is named by its public port. */
function poolLines(lines: string[], stats: RelayStats): void {
  const pools = stats.poolFigures();
  if (pools.length === 0) return;
  lines.push('# HELP relay_pool_members Members of a pool (one public address, many services), by state: ready, unhealthy, draining.', '# TYPE relay_pool_members gauge');
  for (const pool of pools) for (const state of ['ready', 'unhealthy', 'draining'] as const) lines.push(`relay_pool_members{port="${pool.port}",state="${state}"} ${pool[state]}`);
}

/** With --tenants: what each tenant uses now, and what its quotas refused. */
function tenantLines(lines: string[], stats: RelayStats): void {
  const tenants = stats.tenantFigures();
  if (tenants.length === 0) return;
  const perTenant: [name: string, help: string, pick: (figures: (typeof tenants)[number]) => number][] = [
    ['relay_tenant_services', "A tenant's live registrations (and registrations in flight).", (f) => f.services],
    ['relay_tenant_reservations', "Ports reserved for a tenant's departed services.", (f) => f.reservations],
    ['relay_tenant_clients', "A tenant's open public clients, over all its services.", (f) => f.clients],
  ];
  // Tenant names are [A-Za-z0-9_.-]: nothing to escape in a label value.
  for (const [name, help, pick] of perTenant) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const figures of tenants) lines.push(`${name}{tenant="${figures.name}"} ${pick(figures)}`);
  }
  lines.push("# HELP relay_tenant_refusals_total What a tenant's quotas refused, by quota (services, ports, clients).", '# TYPE relay_tenant_refusals_total counter');
  for (const figures of tenants) {
    for (const [quota, count] of figures.refusals) lines.push(`relay_tenant_refusals_total{tenant="${figures.name}",quota="${quota}"} ${count}`);
  }
}
