import cluster from 'node:cluster';
import type { Server } from 'node:http';
import path from 'node:path';
import { DERIVED_LIMITS, type RelayOptions } from '../config/defaults.js';
import { UsageError } from '../errors.js';
import { boundPort, serveMonitor, workerSnapshot, type MonitorSource } from '../monitor/http.js';
import { joinHostPort } from '../protocol/addresses.js';
import { Relay, upgradeSide } from '../relay/relay.js';
import { freshPort } from '../net/out-of-fds.js';
import { runMaster } from '../upgrade/master.js';
import { MasterLeaseStore } from '../upgrade/master-lease-store.js';
import { SiblingFigures } from '../upgrade/sibling-figures.js';
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
  const { options, fleet, tenants } = plan;
  let { metrics } = plan;
  const log = loggerFor('relay', args);
  for (const warning of plan.warnings) log.warn(warning);
  const many = { workers: plan.workers, graceMs: options.resumeGraceMs, ...(plan.workers > 1 && options.stateFile !== undefined ? { stateFile: path.resolve(options.stateFile) } : {}) };
  const go = await master.waitForStart(args.pidFile === undefined ? undefined : path.resolve(args.pidFile), log, args.logFormat, many);
  // One of several workers: a data port of its own after the first's (a given port: its successor's; 0: one picked below).
  if (go.slot !== undefined) options.dataPort = options.dataPort === undefined || options.dataPort === 0 ? 0 : options.dataPort + go.slot.index;
  // The relay's one --metrics listener is the first worker's, showing every worker's figures.
  if (go.slot !== undefined && go.slot.index > 0) metrics = undefined;
  if (go.ports !== undefined) {
    // A replacement for a worker that died (or a successor of one of several): the same ports, even where 0 was asked.
    if (options.port === 0) options.port = go.ports.control;
    if (options.dataPort === 0) options.dataPort = go.ports.data;
    if (metrics?.port === 0 && go.ports.metrics !== undefined) metrics.port = go.ports.metrics;
  }
  if (go.slot !== undefined) await portsOfTheirOwn(options, metrics);
  const { maxClientsPerService, maxPendingPerService, maxTunnels, maxWarmTotal } = options;
  log.info({ maxClientsPerService, maxPendingPerService, maxTunnels, maxWarmTotal, defaults: DERIVED_LIMITS.basis }, 'client limits');
  // Fleet code (and etcd's client) is loaded only in fleet mode.
  const fleetStore = fleet === undefined ? undefined : await fleet.module.joinFleet(fleet.plan, options, log, startRefused, go.slot?.index);
  // One of several workers claims its ports through the master, which keeps the state file.
  const masterStore = go.slot === undefined ? undefined : new MasterLeaseStore(log);
  // A node of several workers: etcd across nodes, the master across its workers; the fleet's leases at the very first start only.
  const firstStart = go.slot?.index === 0 && !go.predecessor && go.ports === undefined;
  const store = fleetStore !== undefined && masterStore !== undefined ? new fleet!.module.WorkerOfNodeStore(fleetStore, masterStore, firstStart) : (fleetStore ?? masterStore);
  const relay = new Relay(options, log, { ...(store === undefined ? {} : { leaseStore: store }), ...(tenants === undefined ? {} : { tenants }) });
  if (fleet !== undefined && fleetStore !== undefined) relay.stats.extraMetrics = () => fleet.module.fleetMetrics(fleetStore);
  try {
    // start() reads the state file first; a predecessor's leases are added to those.
    await relay.start(go.leases);
  } catch (err) {
    if (err instanceof UsageError) startRefused(err.message); // the state file: unsafe, or another relay's
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'is already in use' : code === 'EACCES' ? 'needs more privileges' : `cannot be opened (${String(err)})`;
    const port = (err as { port?: number }).port;
    process.stderr.write(`relay: port ${port ?? `${options.port}${options.dataPort ? ` or ${options.dataPort}` : ''}`} ${why}\n`);
    process.exit(1);
  }
  const source: MonitorSource = { stats: relay.stats, overview: relay.overview, ...(fleetStore === undefined ? {} : { fleet: () => fleetStore.view() }) };
  const siblings = go.slot === undefined ? undefined : new SiblingFigures(go.slot, () => workerSnapshot(source));
  const metricsServer = metrics === undefined ? undefined : await startMetrics(relay, metrics, { ...source, ...(siblings === undefined ? {} : { siblings: () => siblings.gather() }) });
  master.serve(upgradeSide(relay), metricsServer, go.predecessor);
}

/**
 * One of several workers has a data port of its own (services dial back to the worker
 * that asked), and the first the metrics listener; 0 asks for one the kernel picks, which
 * a listen through the master would share with every sibling, and a successor could not
 * ask for again.
 */
async function portsOfTheirOwn(options: RelayOptions, metrics: MetricsListen | undefined): Promise<void> {
  if (options.dataPort === 0) options.dataPort = await freshPort(options.bind);
  if (metrics?.port === 0) metrics.port = await freshPort(metrics.host);
}

function startRefused(message: string): never {
  process.stderr.write(`relay: ${message}\n`);
  process.exit(2);
}

async function startMetrics(relay: Relay, where: MetricsListen, source: MonitorSource): Promise<Server> {
  try {
    const server = await serveMonitor(source, where.host, where.port, {
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
