import { openFileDescriptors, startedAt } from './process-figures.js';
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
    ['relay_tunnels_opened_total', 'Tunnels opened since start.', 'counter', stats.tunnelsOpened],
    ['relay_client_bytes_received_total', 'Bytes from public clients to services, open tunnels included.', 'counter', stats.bytesFromClients],
    ['relay_client_bytes_sent_total', 'Bytes from services to public clients, open tunnels included.', 'counter', stats.bytesToClients],
    ['process_resident_memory_bytes', 'Resident memory size in bytes.', 'gauge', memory.rss],
    ['process_cpu_seconds_total', 'User and system CPU time in seconds.', 'counter', (cpu.user + cpu.system) / 1e6],
    ['process_open_fds', 'Open file descriptors.', 'gauge', openFileDescriptors()],
    ['process_start_time_seconds', 'Start time of the process since the epoch, in seconds.', 'gauge', startedAt],
    ['nodejs_heap_used_bytes', 'V8 heap in use.', 'gauge', memory.heapUsed],
  ];
  const lines: string[] = [];
  for (const [name, help, type, value] of samples) lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);

  lines.push('# HELP relay_refusals_total Connections refused, by reason.', '# TYPE relay_refusals_total counter');
  for (const [reason, count] of stats.refusals) lines.push(`relay_refusals_total{reason="${reason}"} ${count}`);

  const histogram = 'relay_dialback_seconds';
  lines.push(`# HELP ${histogram} Time from a public client's arrival to its service's data connection.`, `# TYPE ${histogram} histogram`);
  let cumulative = 0;
  stats.dialbackBuckets.forEach((bound, i) => {
    cumulative += stats.dialbackCounts[i] ?? 0;
    lines.push(`${histogram}_bucket{le="${bound}"} ${cumulative}`);
  });
  lines.push(`${histogram}_bucket{le="+Inf"} ${stats.dialbackCount}`, `${histogram}_sum ${stats.dialbackSumSeconds}`, `${histogram}_count ${stats.dialbackCount}`);
  return lines.join('\n') + '\n';
}
