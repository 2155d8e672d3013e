import { hostname } from 'node:os';
import { fileArg, portArg } from '../cli/common.js';
import type { RelayOptions } from '../config/defaults.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { splitHostPort } from '../protocol/addresses.js';
import { histogram } from '../monitor/metrics.js';
import { EtcdClient, type EtcdTls } from './etcd-client.js';
import { EtcdLeaseStore } from './etcd-lease-store.js';

/** The fleet flags as the command line gave them. This module is loaded only when --etcd is. */
export interface FleetArgs {
  etcd: string;
  node?: string | undefined;
  advertise?: string | undefined;
  etcdPrefix: string;
  etcdCa?: string | undefined;
  etcdCert?: string | undefined;
  etcdKey?: string | undefined;
}

export interface FleetPlan {
  endpoints: URL[];
  tls: EtcdTls;
  prefix: string;
  node: string;
  advertise: { host: string; port: number };
}

/** Checks the fleet flags against the relay's options; a UsageError names what is wrong. */
export function planFleet(args: FleetArgs, options: RelayOptions): FleetPlan {
  if (options.ports === undefined) throw new UsageError('a fleet (--etcd) needs an explicit --ports A-B, the same on every node');
  if (options.publicHost === undefined) throw new UsageError('a fleet (--etcd) needs --public-host, the address users are given, the same on every node');
  const endpoints = args.etcd.split(',').map((text) => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new UsageError(`--etcd must be a comma-separated list of http:// or https:// URLs, got "${text}"`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--etcd URLs must be http:// or https://, got "${text}"`);
    return url;
  });
  if ((args.etcdCert === undefined) !== (args.etcdKey === undefined)) throw new UsageError('--etcd-cert and --etcd-key go together');
  const tls: EtcdTls = {};
  if (args.etcdCa !== undefined) tls.ca = fileArg('--etcd-ca', args.etcdCa);
  if (args.etcdCert !== undefined) tls.cert = fileArg('--etcd-cert', args.etcdCert);
  if (args.etcdKey !== undefined) tls.key = fileArg('--etcd-key', args.etcdKey);
  if (!/^\/[\x21-\x7e]*\/$/.test(args.etcdPrefix)) throw new UsageError(`--etcd-prefix must start and end with "/", got "${args.etcdPrefix}"`);
  let advertise: { host: string; port: number };
  if (args.advertise !== undefined) {
    const parsed = splitHostPort(args.advertise);
    if (parsed === undefined) throw new UsageError(`--advertise must be HOST:PORT, got "${args.advertise}"`);
    advertise = { host: parsed.host, port: portArg('--advertise port', parsed.port) };
  } else {
    if (options.port === 0) throw new UsageError('a fleet node on PORT 0 needs --advertise HOST:PORT');
    const host = options.bind === undefined || options.bind === '0.0.0.0' || options.bind === '::' ? hostname() : options.bind;
    advertise = { host, port: options.port };
  }
  const node = args.node ?? `${advertise.host}:${advertise.port}`;
  if (!/^[\x21-\x7e]{1,128}$/.test(node)) throw new UsageError(`--node must be 1 to 128 printable characters without spaces, got "${node}"`);
  return { endpoints, tls, prefix: args.etcdPrefix, node, advertise };
}

/** The node's lease store, joined to the fleet; `onFatal` is told if the fleet's range differs. */
export async function joinFleet(plan: FleetPlan, options: RelayOptions, log: Logger, onFatal: (message: string) => void): Promise<EtcdLeaseStore> {
  const store = new EtcdLeaseStore({
    etcd: new EtcdClient(plan.endpoints, plan.tls),
    prefix: plan.prefix,
    node: plan.node,
    advertise: plan.advertise,
    range: options.ports!,
    graceMs: options.resumeGraceMs,
    log: log.child({ node: plan.node }),
    onFatal,
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
    ['relay_fleet_conflicts_total', 'Port assignments etcd gave to another key while this node held them.', 'counter', store.conflicts],
    ['relay_etcd_requests_total', 'Requests to etcd.', 'counter', figures.requests],
    ['relay_etcd_errors_total', 'Requests to etcd that failed (timeout, network, or an error answer).', 'counter', figures.errors],
  ];
  const lines = samples.flatMap(([name, help, type, value]) => [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`]);
  const answered = figures.latencyCounts.reduce((sum, count) => sum + count, 0);
  histogram(lines, 'relay_etcd_request_seconds', 'Latency of answered etcd requests.', figures.latencyBuckets, figures.latencyCounts, answered, figures.latencySumSeconds);
  return lines.join('\n') + '\n';
}
