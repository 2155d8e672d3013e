// Loaded only in fleet mode (--etcd), by a dynamic import in src/cli/relay.ts.
import type { RelayOptions } from '../config/defaults.js';
import type { Logger } from '../log.js';
import { histogram } from '../monitor/metrics.js';
import { EtcdClient, type EtcdTls } from './etcd-client.js';
import { EtcdLeaseStore } from './etcd-lease-store.js';
import { WorkerOfNodeStore } from './worker-store.js';

export { WorkerOfNodeStore };

/** Where and as what a node joins its fleet: the fleet flags, checked (src/cli/fleet-flags.ts). */
export interface FleetPlan {
  endpoints: URL[];
  tls: EtcdTls;
  prefix: string;
  node: string;
  advertise: { host: string; port: number };
}

/**
 * The node's lease store, joined to the fleet; `onFatal` is told if the fleet's range
 * differs. `worker`: which of the node's several workers this one is (`--workers`).
 */
export async function joinFleet(plan: FleetPlan, options: RelayOptions, log: Logger, onFatal: (message: string) => void, worker?: number): Promise<EtcdLeaseStore> {
  const store = new EtcdLeaseStore({
    etcd: new EtcdClient(plan.endpoints, plan.tls),
    prefix: plan.prefix,
    node: plan.node,
    advertise: plan.advertise,
    range: options.ports!,
    graceMs: options.resumeGraceMs,
    log: log.child({ node: plan.node }),
    onFatal,
    ...(worker === undefined ? {} : { worker }),
  });
  await store.start();
  return store;
}

/** The node's fleet figures in Prometheus text format, appended to /metrics. */
export function fleetMetrics(store: EtcdLeaseStore): string {
  const figures = store.etcd.figures;
  const samples: [name: string, help: string, type: 'gauge' | 'counter', value: number][] = [
    ['relay_fleet_nodes', 'Fleet nodes seen alive in etcd (this one included).', 'gauge', store.nodeCount],
    ['relay_fleet_ports_held', 'Public ports this node holds for a key (registered or reserved).', 'gauge', store.portsHeld],
    ['relay_fleet_conflicts_total', 'Conflicts found: a port (or key) served here that etcd gives to another assignment; each is settled for the older one.', 'counter', store.conflicts],
    ['relay_etcd_requests_total', 'Requests to etcd.', 'counter', figures.requests],
    ['relay_etcd_errors_total', 'Requests to etcd that failed (timeout, network, or an error answer).', 'counter', figures.errors],
  ];
  const lines = samples.flatMap(([name, help, type, value]) => [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`]);
  const answered = figures.latencyCounts.reduce((sum, count) => sum + count, 0);
  histogram(lines, 'relay_etcd_request_seconds', 'Latency of answered etcd requests.', figures.latencyBuckets, figures.latencyCounts, answered, figures.latencySumSeconds);
  return lines.join('\n') + '\n';
}
