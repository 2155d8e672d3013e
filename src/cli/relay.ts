import cluster from 'node:cluster';
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { RELAY_DEFAULTS, type PortRange, type RelayOptions } from '../config.js';
import { UsageError } from '../errors.js';
import type { Server } from 'node:http';
import { joinHostPort, splitHostPort } from '../protocol/messages.js';
import { boundPort, serveMetrics } from '../relay/metrics.js';
import { runMaster } from '../relay/master.js';
import { Relay } from '../relay/relay.js';
import { RelayStandIn } from '../relay/upgrade-stand-in.js';
import { MasterLink } from '../relay/worker-link.js';
import { fileArg, loggerFor, portArg, positiveArg, usageFailure, withLogOptions } from './common.js';

function parseRange(text: string): PortRange {
  const match = /^(\d+)-(\d+)$/.exec(text);
  if (match === null) throw new UsageError(`--ports must look like A-B (for example 9000-9099), got "${text}"`);
  const first = portArg('--ports start', match[1]);
  const last = portArg('--ports end', match[2]);
  if (first > last) throw new UsageError(`--ports start ${first} is above its end ${last}`);
  return { first, last };
}

const seconds = (name: string, value: unknown): number => Math.round(positiveArg(name, value) * 1000);
const count = (name: string, value: unknown): number => {
  const n = positiveArg(name, value);
  if (!Number.isInteger(n)) throw new UsageError(`${name} must be a whole number, got "${String(value)}"`);
  return n;
};

const parser = withLogOptions(
  yargs(hideBin(process.argv))
    .scriptName('relay')
    .usage('$0 PORT [options]\n\nA reverse TCP relay: services behind a firewall register on PORT and get a public port each.')
    .command('$0 <port>', false)
    .positional('port', { type: 'string', describe: 'Port where services connect (control, and data unless --data-port)' })
    .option('data-port', { type: 'string', describe: 'Separate port for data (dial-back) connections' })
    .option('ports', { type: 'string', describe: 'Public port range A-B [default: PORT+1-65535]' })
    .option('public-host', { type: 'string', describe: 'Host name given to services as their public host [default: the name the service dialed]' })
    .option('bind', { type: 'string', describe: 'Interface address to listen on [default: all]' })
    .option('secret', { type: 'string', describe: 'Services must prove they know this to register (also RELAY_SECRET)' })
    .option('tls-cert', { type: 'string', describe: 'PEM certificate: TLS on the control and data ports (public ports stay plain)' })
    .option('tls-key', { type: 'string', describe: 'PEM private key for --tls-cert' })
    .option('metrics', { type: 'string', describe: 'Serve Prometheus /metrics and /healthz on HOST:PORT (or PORT on 127.0.0.1)' })
    .option('max-services', { type: 'number', default: RELAY_DEFAULTS.maxServices, describe: 'Registered services at once' })
    .option('max-clients', { type: 'number', default: RELAY_DEFAULTS.maxClientsPerService, describe: 'Open public clients per service' })
    .option('max-pending', { type: 'number', default: RELAY_DEFAULTS.maxPendingPerService, describe: 'Clients waiting for a dial-back, per service' })
    .option('max-warm', { type: 'number', default: RELAY_DEFAULTS.maxWarmPerService, describe: 'Prewarmed idle data connections per service' })
    .option('handshake-timeout', { type: 'number', default: RELAY_DEFAULTS.handshakeTimeoutMs / 1000, describe: 'Seconds allowed for the first line of any connection' })
    .option('dialback-timeout', { type: 'number', default: RELAY_DEFAULTS.dialbackTimeoutMs / 1000, describe: 'Seconds a public client waits for its dial-back' })
    .option('heartbeat', { type: 'number', default: RELAY_DEFAULTS.heartbeatMs / 1000, describe: 'Seconds between PINGs; 3 missed mean the peer is dead' })
    .option('resume-grace', { type: 'number', default: RELAY_DEFAULTS.resumeGraceMs / 1000, describe: "Seconds a departed service's port stays reserved for it" })
    .option('drain-timeout', { type: 'number', default: RELAY_DEFAULTS.drainTimeoutMs / 1000, describe: 'Seconds open tunnels may finish after SIGTERM' })
    .option('pid-file', { type: 'string', describe: 'Write the pid to signal (SIGUSR2 upgrades, SIGTERM stops) to FILE' })
    .config('config', 'JSON file of options (keys as the long flags)')
    .env('RELAY')
    .example('$0 8080', 'services connect to 8080; the first gets public port 8081')
    .example('$0 8080 --ports 9000-9099 --public-host relay.example.com', 'public ports 9000-9099, announced as relay.example.com')
    .example('RELAY_SECRET=s3cret $0 8080 --data-port 8079', 'require a secret; dial-backs on 8079')
    .example('$0 8080 --tls-cert cert.pem --tls-key key.pem --metrics 127.0.0.1:9100', 'TLS to services; Prometheus metrics on 9100')
    .example('$0 8080 --pid-file /run/relay.pid', 'later, kill -USR2 $(cat /run/relay.pid) moves it onto the code on disk')
    .strict()
    .help()
    .version(false)
    .fail(usageFailure('relay', 'PORT')),
);

async function main(): Promise<void> {
  const master = new MasterLink();
  const args = await parser.parseAsync();
  let options: RelayOptions;
  let metrics: { host: string; port: number } | undefined;
  try {
    const port = portArg('PORT', args.port, true);
    options = {
      port,
      ...(args.dataPort === undefined ? {} : { dataPort: portArg('--data-port', args.dataPort) }),
      ...(args.ports === undefined ? {} : { ports: parseRange(args.ports) }),
      ...(args.publicHost === undefined ? {} : { publicHost: args.publicHost }),
      ...(args.bind === undefined ? {} : { bind: args.bind }),
      ...(args.secret === undefined || args.secret === '' ? {} : { secret: args.secret }),
      maxServices: count('--max-services', args.maxServices),
      maxClientsPerService: count('--max-clients', args.maxClients),
      maxPendingPerService: count('--max-pending', args.maxPending),
      maxWarmPerService: count('--max-warm', args.maxWarm),
      handshakeTimeoutMs: seconds('--handshake-timeout', args.handshakeTimeout),
      dialbackTimeoutMs: seconds('--dialback-timeout', args.dialbackTimeout),
      heartbeatMs: seconds('--heartbeat', args.heartbeat),
      resumeGraceMs: seconds('--resume-grace', args.resumeGrace),
      drainTimeoutMs: seconds('--drain-timeout', args.drainTimeout),
    };
    if (options.ports === undefined && port === 65535) throw new UsageError('PORT 65535 leaves no public ports; give --ports');
    if (options.ports === undefined && port === 0) throw new UsageError('PORT 0 (any free port) needs --ports A-B for the public ports');
    if (options.heartbeatMs < 10 || options.heartbeatMs > 3_600_000) throw new UsageError('--heartbeat must be from 0.01 to 3600 seconds');
    const host = options.publicHost;
    if (host !== undefined && splitHostPort(`${host}:1`) === undefined && splitHostPort(`[${host}]:1`) === undefined) {
      throw new UsageError(`--public-host must be a host name or address, got "${options.publicHost}"`);
    }
    if ((args.tlsCert === undefined) !== (args.tlsKey === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
    if (args.tlsCert !== undefined && args.tlsKey !== undefined) {
      options.tls = { cert: fileArg('--tls-cert', args.tlsCert), key: fileArg('--tls-key', args.tlsKey) };
    }
    if (args.metrics !== undefined) metrics = parseListen('--metrics', args.metrics);
  } catch (err) {
    return usageFailure('relay', 'PORT')(undefined, err as Error);
  }
  const log = loggerFor('relay', args);
  const go = await master.waitForStart(args.pidFile === undefined ? undefined : path.resolve(args.pidFile), log, args.logFormat);
  if (go.ports !== undefined) {
    // A replacement for a worker that died: the same ports, even where 0 was asked.
    if (options.port === 0) options.port = go.ports.control;
    if (options.dataPort === 0) options.dataPort = go.ports.data;
    if (metrics?.port === 0 && go.ports.metrics !== undefined) metrics.port = go.ports.metrics;
  }
  const relay = new Relay(options, log);
  const upgradable = new RelayStandIn(relay);
  try {
    await upgradable.installLeases(go.leases);
    await relay.start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'is already in use' : code === 'EACCES' ? 'needs more privileges' : `cannot be opened (${String(err)})`;
    process.stderr.write(`relay: port ${options.port}${options.dataPort ? ` or ${options.dataPort}` : ''} ${why}\n`);
    process.exit(1);
  }
  const metricsServer = metrics === undefined ? undefined : await startMetrics(relay, metrics);
  master.serve(upgradable, metricsServer, go.predecessor);
}

async function startMetrics(relay: Relay, where: { host: string; port: number }): Promise<Server> {
  try {
    const server = await serveMetrics(relay.stats, where.host, where.port);
    relay.log.info({ metrics: `http://${joinHostPort(where.host, boundPort(server))}/metrics` }, 'metrics listening');
    return server;
  } catch (err) {
    process.stderr.write(`relay: --metrics ${joinHostPort(where.host, where.port)} cannot be opened (${(err as NodeJS.ErrnoException).code ?? String(err)})\n`);
    process.exit(1);
  }
}

function parseListen(name: string, text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(':');
  if (colon < 0) return { host: '127.0.0.1', port: portArg(name, text, true) };
  const host = splitHostPort(`${text.slice(0, colon)}:1`)?.host;
  if (host === undefined) throw new UsageError(`${name} must be HOST:PORT or PORT, got "${text}"`);
  return { host, port: portArg(name, text.slice(colon + 1), true) };
}

// The launcher starts the master; the master forks this same program as its worker.
if (cluster.isPrimary) runMaster();
else await main();
