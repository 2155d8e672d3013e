import cluster from 'node:cluster';
import type { Server } from 'node:http';
import path from 'node:path';
import { DERIVED_LIMITS } from '../config/defaults.js';
import { UsageError } from '../errors.js';
import type { FleetView } from '../monitor/fleet-view.js';
import { boundPort, serveMonitor } from '../monitor/http.js';
import { joinHostPort } from '../protocol/addresses.js';
import { Relay, upgradeSide } from '../relay/relay.js';
import { runMaster } from '../upgrade/master.js';
import { MasterLink } from '../upgrade/worker-link.js';
import { loggerFor, usageFailure } from './common.js';
import { argvWithEnv } from './env-options.js';
import { parser, planRelay, type MetricsListen, type RelayPlan } from './relay-flags.js';
import { runStatus } from './relay-status.js';

async function main(): Promise<void> {
  const master = new MasterLink();
  const args = await parser.parseAsync(argvWithEnv(parser, ['port']));
  let plan: RelayPlan;
  try {
    plan = await planRelay(args);
  } catch (err) {
    return usageFailure('relay', 'PORT')(undefined, err as Error);
  }
  const { options, metrics, fleet, tenants } = plan;
  const log = loggerFor('relay', args);
  for (const warning of plan.warnings) log.warn(warning);
  const go = await master.waitForStart(args.pidFile === undefined ? undefined : path.resolve(args.pidFile), log, args.logFormat);
  if (go.ports !== undefined) {
    // A replacement for a worker that died: the same ports, even where 0 was asked.
    if (options.port === 0) options.port = go.ports.control;
    if (options.dataPort === 0) options.dataPort = go.ports.data;
    if (metrics?.port === 0 && go.ports.metrics !== undefined) metrics.port = go.ports.metrics;
  }
  const { maxClientsPerService, maxPendingPerService, maxTunnels, maxWarmTotal } = options;
  log.info({ maxClientsPerService, maxPendingPerService, maxTunnels, maxWarmTotal, defaults: DERIVED_LIMITS.basis }, 'client limits');
  // Fleet code (and etcd's client) is loaded only in fleet mode.
  const store = fleet === undefined ? undefined : await fleet.module.joinFleet(fleet.plan, options, log, startRefused);
  const relay = new Relay(options, log, { ...(store === undefined ? {} : { leaseStore: store }), ...(tenants === undefined ? {} : { tenants }) });
  if (fleet !== undefined && store !== undefined) relay.stats.extraMetrics = () => fleet.module.fleetMetrics(store);
  try {
    // start() reads the state file first; a predecessor's leases are added to those.
    await relay.start(go.leases);
  } catch (err) {
    if (err instanceof UsageError) startRefused(err.message); // the state file: unsafe, or another relay's
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'is already in use' : code === 'EACCES' ? 'needs more privileges' : `cannot be opened (${String(err)})`;
    process.stderr.write(`relay: port ${options.port}${options.dataPort ? ` or ${options.dataPort}` : ''} ${why}\n`);
    process.exit(1);
  }
  const metricsServer = metrics === undefined ? undefined : await startMetrics(relay, metrics, store === undefined ? undefined : () => store.view());
  master.serve(upgradeSide(relay), metricsServer, go.predecessor);
}

function startRefused(message: string): never {
  process.stderr.write(`relay: ${message}\n`);
  process.exit(2);
}

async function startMetrics(relay: Relay, where: MetricsListen, fleet: (() => FleetView) | undefined): Promise<Server> {
  try {
    const server = await serveMonitor({ stats: relay.stats, overview: relay.overview, ...(fleet === undefined ? {} : { fleet }) }, where.host, where.port, {
      ...(where.auth === undefined ? {} : { auth: where.auth }),
      ...(where.hosts === undefined ? {} : { hosts: where.hosts }),
      log: relay.log,
      onError: (err) => relay.refused('metrics', { err: (err as NodeJS.ErrnoException).code ?? err.message }, 'metrics listener error'),
    });
    const base = `http://${joinHostPort(where.host, boundPort(server))}`;
    relay.log.info({ metrics: `${base}/metrics`, dashboard: `${base}/`, auth: where.auth !== undefined }, 'metrics listening');
    return server;
  } catch (err) {
    process.stderr.write(`relay: --metrics ${joinHostPort(where.host, where.port)} cannot be opened (${(err as NodeJS.ErrnoException).code ?? String(err)})\n`);
    process.exit(1);
  }
}

// `relay status` talks to a running relay. Otherwise the launcher starts the master,
// and the master forks this same program as its worker.
if (process.argv[2] === 'status') await runStatus(process.argv.slice(3));
else if (cluster.isPrimary) runMaster();
else await main();
