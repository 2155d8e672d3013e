import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { loadTenants, type TenantSpec } from '../access/tenants-file.js';
import { DERIVED_LIMITS, RELAY_DEFAULTS, publicRange, type PortRange, type RelayOptions } from '../config/defaults.js';
import { checkCombinations, checkNames, flagValue, loweredWarning, machineBoundValue, RELAY_PROGRAM_RULES, RELAY_RULES, type Lowered } from '../config/rules.js';
import { UsageError } from '../errors.js';
import type { FleetPlan } from '../fleet/fleet.js';
import type { BasicCredentials } from '../monitor/basic-auth.js';
import { isHost, splitHostPort } from '../protocol/addresses.js';
import { cidrListArg, configFile, metricsAuthArg, PACKAGE_VERSION, parseListen, portArg, tlsFilesArg, usageFailure, withLogOptions } from './common.js';
import { planFleet, type FleetArgs } from './fleet-flags.js';

/*
 * The relay's command line: every flag with its default and help, and the checks that
 * turn the parsed flags into a RelayOptions. Nothing here opens a socket.
 */

function parseRange(text: string): PortRange {
  const match = /^(\d+)-(\d+)$/.exec(text);
  if (match === null) throw new UsageError(`--ports must look like A-B (for example 9000-9099), got "${text}"`);
  const first = portArg('--ports start', match[1]);
  const last = portArg('--ports end', match[2]);
  if (first > last) throw new UsageError(`--ports start ${first} is above its end ${last}`);
  return { first, last };
}

export const parser = withLogOptions(
  yargs(hideBin(process.argv))
    .scriptName('relay')
    .usage('$0 PORT [options]\n\nA reverse TCP relay: services behind a firewall register on PORT and get a public port each.')
    .command('$0 <port>', false)
    .positional('port', { type: 'string', describe: 'Port where services connect (control, and data unless --data-port)' })
    .option('data-port', { type: 'string', describe: 'Separate port for data (dial-back) connections' })
    .option('ports', { type: 'string', describe: 'Public port range A-B [default: PORT+1-65535]' })
    .option('public-host', { type: 'string', describe: 'Host name given to services as their public host [default: the name the service dialed]' })
    .option('names-port', { type: 'string', describe: 'A shared public port routed by TLS SNI or HTTP Host to the service that took the name (repeatable, or P,P)' })
    .option('names-domain', { type: 'string', describe: 'Names are NAME.DOMAIN on the names ports [default: the public host]' })
    .option('bind', { type: 'string', describe: 'Interface address to listen on [default: all]' })
    .option('secret', { type: 'string', describe: 'Services must prove they know this to register (also RELAY_SECRET)' })
    .option('tenants', { type: 'string', describe: 'JSON file of tenants (name, secrets, ports, quotas): every service names one; SIGHUP reloads it' })
    .option('allow', { type: 'string', describe: 'CIDR[,CIDR...]: only public clients from these ranges are let in (tenants and services may narrow it)' })
    .option('deny', { type: 'string', describe: 'CIDR[,CIDR...]: public clients from these ranges are reset' })
    .option('public-proxy-from', { type: 'string', describe: 'CIDR[,CIDR...]: load balancers whose connections to public ports begin with a PROXY v1/v2 header naming the client' })
    .option('tls-cert', { type: 'string', describe: 'PEM certificate: TLS on the control and data ports (public ports stay plain)' })
    .option('tls-key', { type: 'string', describe: 'PEM private key for --tls-cert' })
    .option('metrics', { type: 'string', describe: 'Serve the dashboard (/), its JSON (/api/), Prometheus /metrics and /healthz on HOST:PORT (or PORT on 127.0.0.1)' })
    .option('metrics-auth', { type: 'string', describe: 'USER:PASS: HTTP basic auth for the whole --metrics listener (also RELAY_METRICS_AUTH)' })
    .option('metrics-host', { type: 'string', describe: 'NAME[,NAME...]: host names the --metrics listener answers to besides its own address and names (others get 421)' })
    // Numbers are taken as text, so that an error quotes what was written (yargs would turn it into NaN or 1e+20).
    .option('max-services', { type: 'string', default: RELAY_DEFAULTS.maxServices, describe: 'Registered services at once' })
    .option('max-clients', { type: 'string', default: RELAY_DEFAULTS.maxClientsPerService, describe: `Open public clients per service (default ${DERIVED_LIMITS.basis})` })
    .option('max-pending', { type: 'string', default: RELAY_DEFAULTS.maxPendingPerService, describe: `Clients waiting for a dial-back, per service (default ${DERIVED_LIMITS.basis})` })
    .option('max-tunnels', {
      type: 'string',
      default: RELAY_DEFAULTS.maxTunnels,
      describe: `Public clients across all services (spliced, waiting for a dial-back or held at a door), 2 fds each (default ${DERIVED_LIMITS.basis})`,
    })
    .option('max-warm', { type: 'string', default: RELAY_DEFAULTS.maxWarmPerService, describe: 'Prewarmed idle data connections per service; 0 = none' })
    .option('max-warm-total', {
      type: 'string',
      default: RELAY_DEFAULTS.maxWarmTotal,
      describe: `Prewarmed idle data connections across all services, 1 fd each; 0 = none (default ${DERIVED_LIMITS.basis})`,
    })
    .option('handshake-timeout', { type: 'string', default: RELAY_DEFAULTS.handshakeTimeoutMs / 1000, describe: 'Seconds allowed for the first line of any connection' })
    .option('dialback-timeout', { type: 'string', default: RELAY_DEFAULTS.dialbackTimeoutMs / 1000, describe: 'Seconds a public client waits for its dial-back' })
    .option('heartbeat', { type: 'string', default: RELAY_DEFAULTS.heartbeatMs / 1000, describe: 'Seconds between PINGs; 3 missed mean the peer is dead' })
    .option('resume-grace', { type: 'string', default: RELAY_DEFAULTS.resumeGraceMs / 1000, describe: "Seconds a departed service's port stays reserved for it" })
    .option('drain-timeout', { type: 'string', default: RELAY_DEFAULTS.drainTimeoutMs / 1000, describe: 'Seconds open tunnels may finish after SIGTERM' })
    .option('hold-timeout', { type: 'string', default: RELAY_DEFAULTS.holdTimeoutMs / 1000, describe: 'Seconds a public client waits for its service to come back before it is reset' })
    .option('probe', { type: 'string', default: RELAY_DEFAULTS.probeIntervalMs / 1000, describe: 'Seconds between end-to-end probes (a dial-back) of each service that supports them; 0 = off' })
    .option('max-clients-per-ip', { type: 'string', default: RELAY_DEFAULTS.maxClientsPerIp, describe: 'Open public clients from one address (IPv6: one /64) over all public ports; 0 = no limit' })
    .option('max-connect-rate', { type: 'string', default: RELAY_DEFAULTS.maxConnectRate, describe: 'New public connections a second from one address (IPv6: one /64); 0 = no limit' })
    .option('idle-timeout', { type: 'string', default: RELAY_DEFAULTS.idleTimeoutMs / 1000, describe: 'Seconds a tunnel may move no byte either way before it is reset; 0 = never' })
    .option('state', { type: 'string', describe: 'File that keeps the leases (which key owns which port) across restarts' })
    .option('etcd', { type: 'string', describe: 'Join a relay fleet coordinated by etcd at URL[,URL...] (needs --ports and --public-host)' })
    .option('node', { type: 'string', describe: "This fleet node's name [default: its --advertise]" })
    .option('advertise', { type: 'string', describe: 'HOST:PORT where services reach this fleet node [default: --bind or host name, and PORT]' })
    .option('etcd-prefix', { type: 'string', default: '/tcp-relay/', describe: 'Prefix of every key the fleet keeps in etcd' })
    .option('etcd-ca', { type: 'string', describe: 'PEM CA that signed the etcd server certificate' })
    .option('etcd-cert', { type: 'string', describe: 'PEM client certificate for etcd' })
    .option('etcd-key', { type: 'string', describe: 'PEM private key for --etcd-cert' })
    .option('workers', { type: 'string', default: '1', describe: 'Worker processes that relay, N or auto (one per core): each serves the services whose control connection it accepted' })
    .option('pid-file', { type: 'string', describe: 'Write the pid to signal (SIGUSR2 upgrades, SIGTERM stops) to FILE' })
    .config('config', 'JSON file of options (keys as the long flags)', configFile)
    .example('$0 8080', 'services connect to 8080; the first gets public port 8081')
    .example('$0 8080 --ports 9000-9099 --public-host relay.example.com', 'public ports 9000-9099, announced as relay.example.com')
    .example('RELAY_SECRET=s3cret $0 8080 --data-port 8079', 'require a secret; dial-backs on 8079')
    .example('$0 8080 --state /var/lib/relay/leases.json', 'services get their ports back after a restart of the relay')
    .example('$0 8080 --tls-cert cert.pem --tls-key key.pem --metrics 127.0.0.1:9100', 'TLS to services; dashboard and metrics on 9100')
    .example('$0 status --metrics 127.0.0.1:9100', "a running relay's services, tunnels and refusals as a table")
    .example('$0 8080 --names-port 443 --names-domain relay.example.com', 'a service with --name www is reached at www.relay.example.com:443')
    .example('$0 8080 --workers auto --data-port 8070', 'one worker per core, with data ports 8070, 8071, ...')
    .example('$0 8080 --allow 192.0.2.0/24 --public-proxy-from 10.0.0.5', 'clients only from 192.0.2.0/24, as told by the load balancer at 10.0.0.5')
    .example('$0 8080 --pid-file /run/relay.pid', 'later, kill -USR2 $(cat /run/relay.pid) moves it onto the code on disk')
    .strict()
    .help()
    .version(PACKAGE_VERSION)
    .fail(usageFailure('relay', 'PORT')),
);

/** The relay as its flags describe it, checked. */
export interface RelayPlan {
  options: RelayOptions;
  /** The tenants file's entries, read once here. */
  tenants: TenantSpec[] | undefined;
  metrics: MetricsListen | undefined;
  fleet: { module: typeof import('../fleet/fleet.js'); plan: FleetPlan } | undefined;
  /** For the log, once it is set up: what the relay does differently from what was asked. */
  warnings: string[];
  /** How many worker processes (`--workers`). */
  workers: number;
}

export interface MetricsListen {
  host: string;
  port: number;
  auth?: BasicCredentials;
  /** --metrics-host: more names in the Host header that are answered. */
  hosts?: string[];
}

type Args = Awaited<ReturnType<typeof parser.parseAsync>>;

/** Checks the parsed flags and makes the relay's options of them; throws a UsageError naming the first problem. */
export async function planRelay(args: Args): Promise<RelayPlan> {
  const lowered: Lowered[] = [];
  const options = relayOptions(args, lowered);
  checkCombinations(options, 'flags');
  checkNames(options);
  // Read once, here: a file that does not load stops the relay with one line (exit 2).
  const tenants = options.tenantsFile === undefined ? undefined : loadTenants(options.tenantsFile, publicRange(options));
  const host = options.publicHost;
  if (host !== undefined && splitHostPort(`${host}:1`) === undefined && splitHostPort(`[${host}]:1`) === undefined) {
    throw new UsageError(`--public-host must be a host name or address, got "${options.publicHost}"`);
  }
  if ((args.tlsCert === undefined) !== (args.tlsKey === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  if (args.tlsCert !== undefined && args.tlsKey !== undefined) {
    options.tls = tlsFilesArg(args.tlsCert, args.tlsKey);
    options.tlsFiles = { cert: path.resolve(args.tlsCert), key: path.resolve(args.tlsKey) };
  }
  let fleet: RelayPlan['fleet'];
  if (args.etcd !== undefined) {
    if (options.stateFile !== undefined) throw new UsageError('--state and --etcd do not go together: a fleet keeps its leases in etcd');
    const module = await import('../fleet/fleet.js');
    fleet = { module, plan: planFleet(args as FleetArgs, options) };
  }
  let metrics: MetricsListen | undefined;
  if (args.metrics !== undefined) metrics = parseListen('--metrics', args.metrics);
  if (args.metricsAuth !== undefined) {
    if (metrics === undefined) throw new UsageError('--metrics-auth needs --metrics');
    metrics.auth = metricsAuthArg(args.metricsAuth);
  }
  if (args.metricsHost !== undefined) {
    if (metrics === undefined) throw new UsageError('--metrics-host needs --metrics');
    metrics.hosts = metricsHostsArg(args.metricsHost);
  }
  const warning = loweredWarning(lowered, DERIVED_LIMITS);
  const workers = workersArg(args.workers, options);
  return { options, tenants, metrics, fleet, warnings: warning === undefined ? [] : [warning], workers };
}

/**
 * `--workers N|auto` (auto: the cores this process may use). With several, a fixed
 * --data-port is the first of N consecutive data ports, one per worker.
 */
function workersArg(raw: unknown, options: RelayOptions): number {
  const workers = raw === 'auto' ? Math.min(availableParallelism(), RELAY_PROGRAM_RULES.workers.max) : flagValue(RELAY_PROGRAM_RULES.workers, raw);
  if (workers === 1) return workers;
  const { dataPort, port } = options;
  if (dataPort === undefined || dataPort === 0) return workers;
  const last = dataPort + workers - 1;
  if (last > 65535) throw new UsageError(`--data-port ${dataPort} with --workers ${workers} needs data ports up to ${last}, above 65535`);
  if (port >= dataPort && port <= last) throw new UsageError(`--data-port ${dataPort} with --workers ${workers} uses ports ${dataPort}-${last}, which include PORT ${port}`);
  const range = publicRange(options);
  if (dataPort <= range.last && last >= range.first)
    throw new UsageError(`--data-port ${dataPort} with --workers ${workers} uses ports ${dataPort}-${last}, which overlap the public ports ${range.first}-${range.last}`);
  return workers;
}

/** `--metrics-host NAME[,NAME...]`: names or addresses, without a port (the port does not matter). */
function metricsHostsArg(text: string): string[] {
  return text.split(',').map((name) => {
    const bare = name.trim().replace(/^\[(.*)\]$/, '$1');
    if (!isHost(bare) || (bare.includes(':') && isIP(bare) !== 6)) throw new UsageError(`--metrics-host must be NAME[,NAME...] (host names or addresses, no port), got "${name}"`);
    return bare.toLowerCase();
  });
}

/** `lowered` gets the limits above what the machine can hold, lowered to it. */
function relayOptions(args: Args, lowered: Lowered[]): RelayOptions {
  const port = portArg('PORT', args.port, true);
  return {
    port,
    ...(args.dataPort === undefined ? {} : { dataPort: portArg('--data-port', args.dataPort) }),
    ...(args.ports === undefined ? {} : { ports: parseRange(args.ports) }),
    ...(args.publicHost === undefined ? {} : { publicHost: args.publicHost }),
    ...(args.bind === undefined ? {} : { bind: args.bind }),
    ...(args.secret === undefined || args.secret === '' ? {} : { secret: args.secret }),
    maxServices: flagValue(RELAY_RULES.maxServices, args.maxServices),
    maxClientsPerService: machineBoundValue('maxClientsPerService', args.maxClients, DERIVED_LIMITS, lowered),
    maxPendingPerService: machineBoundValue('maxPendingPerService', args.maxPending, DERIVED_LIMITS, lowered),
    maxTunnels: machineBoundValue('maxTunnels', args.maxTunnels, DERIVED_LIMITS, lowered),
    maxWarmPerService: flagValue(RELAY_RULES.maxWarmPerService, args.maxWarm),
    maxWarmTotal: machineBoundValue('maxWarmTotal', args.maxWarmTotal, DERIVED_LIMITS, lowered),
    handshakeTimeoutMs: flagValue(RELAY_RULES.handshakeTimeoutMs, args.handshakeTimeout),
    dialbackTimeoutMs: flagValue(RELAY_RULES.dialbackTimeoutMs, args.dialbackTimeout),
    heartbeatMs: flagValue(RELAY_RULES.heartbeatMs, args.heartbeat),
    resumeGraceMs: flagValue(RELAY_RULES.resumeGraceMs, args.resumeGrace),
    drainTimeoutMs: flagValue(RELAY_RULES.drainTimeoutMs, args.drainTimeout),
    holdTimeoutMs: flagValue(RELAY_RULES.holdTimeoutMs, args.holdTimeout),
    probeIntervalMs: flagValue(RELAY_RULES.probeIntervalMs, args.probe),
    maxClientsPerIp: flagValue(RELAY_RULES.maxClientsPerIp, args.maxClientsPerIp),
    maxConnectRate: flagValue(RELAY_RULES.maxConnectRate, args.maxConnectRate),
    idleTimeoutMs: flagValue(RELAY_RULES.idleTimeoutMs, args.idleTimeout),
    ...(args.state === undefined || args.state === '' ? {} : { stateFile: args.state }),
    ...(args.tenants === undefined || args.tenants === '' ? {} : { tenantsFile: path.resolve(args.tenants) }),
    ...(args.namesPort === undefined ? {} : { namesPorts: namesPortsArg(args.namesPort as string | string[]) }),
    ...(args.namesDomain === undefined ? {} : { namesDomain: args.namesDomain.toLowerCase().replace(/\.$/, '') }),
    ...(args.allow === undefined ? {} : { allow: cidrListArg('--allow', args.allow) }),
    ...(args.deny === undefined ? {} : { deny: cidrListArg('--deny', args.deny) }),
    ...(args.publicProxyFrom === undefined ? {} : { publicProxyFrom: cidrListArg('--public-proxy-from', args.publicProxyFrom) }),
  };
}

/** `--names-port P` given once or more, each perhaps `P,P`. */
function namesPortsArg(given: string | string[]): number[] {
  return [given]
    .flat()
    .flatMap((text) => String(text).split(','))
    .map((text) => portArg('--names-port', text));
}
