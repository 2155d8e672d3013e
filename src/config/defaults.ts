/**
 * Every tunable of the relay and of the service library, with its default. The
 * command lines, docs/operations.md and the tests all read the defaults from here.
 */
import { deriveLimits, machineFigures, type DerivedLimits } from './limits.js';

export interface PortRange {
  first: number;
  last: number;
}

export interface RelayOptions {
  /** Where services connect for control (and data, unless dataPort differs). 0 picks a free port. */
  port: number;
  /** Where services dial back; defaults to `port`. */
  dataPort?: number;
  /** Interface to listen on, for every port; all interfaces when undefined. */
  bind?: string;
  /** Host name given to services as their public host; else the name the service dialed. */
  publicHost?: string;
  /** Public ports to allocate from; defaults to port+1 .. 65535. */
  ports?: PortRange;
  /** Services must prove they know this to register; undefined means open registration. */
  secret?: string;
  /** TLS on the control and data ports (PEM); public ports stay plain TCP. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** The files `tls` was read from (`--tls-cert`, `--tls-key`): reload() reads them again. */
  tlsFiles?: { cert: string; key: string };
  maxServices: number;
  maxClientsPerService: number;
  maxPendingPerService: number;
  /** Public clients open or waiting for their dial-back, across all services (each tunnel costs 2 fds). */
  maxTunnels: number;
  /** Prewarmed idle data connections a service may park on the relay. */
  maxWarmPerService: number;
  /** Prewarmed idle data connections of all services together (each holds a descriptor). */
  maxWarmTotal: number;
  /** Time allowed for the first line (and the PROOF) on any connection to a relay port. */
  handshakeTimeoutMs: number;
  /** Time a public client waits for its service to dial back before it is reset. */
  dialbackTimeoutMs: number;
  /** Interval of PING on control connections; a peer silent for HEARTBEAT_MISSES intervals is dead. */
  heartbeatMs: number;
  /** How long a departed service's port stays reserved for its resume key. */
  resumeGraceMs: number;
  /** On shutdown, how long open tunnels may keep going before they are cut. */
  drainTimeoutMs: number;
  /** How long a public client waits at the door of a service that is away before it is reset. */
  holdTimeoutMs: number;
  /** Interval of end-to-end probes of services that listed `probe`; 0 turns them off. */
  probeIntervalMs: number;
  /** Public clients open at once from one address (an IPv6 /64), over every public port; 0: no limit. */
  maxClientsPerIp: number;
  /** New public connections a second from one address (an IPv6 /64), bursts of one second's worth; 0: no limit. */
  maxConnectRate: number;
  /** A tunnel that moves no byte either way for this long is reset; 0: never. */
  idleTimeoutMs: number;
  /** Where leases are kept across restarts (`--state`); none when undefined. */
  stateFile?: string;
  /**
   * Named credentials with their own ports and quotas (`--tenants`, docs/operations.md);
   * read at start and again on reloadTenants(). Every service must then name a tenant.
   */
  tenantsFile?: string;
  /**
   * Shared public ports routed by name (`--names-port`): a client's TLS SNI or HTTP Host
   * picks the service that registered that name. The first is the one `OK` gives.
   */
  namesPorts?: number[];
  /** Names are NAME.namesDomain (`--names-domain`); the public host when undefined. */
  namesDomain?: string;
  /** CIDR ranges public clients must come from (`--allow`, like `"192.0.2.0/24"`); everyone when undefined. */
  allow?: readonly string[];
  /** CIDR ranges whose public clients are reset (`--deny`). */
  deny?: readonly string[];
  /** CIDR ranges of load balancers whose connections to public ports begin with a PROXY header naming the client (`--public-proxy-from`). */
  publicProxyFrom?: readonly string[];
}

/** The public ports a relay hands out: `ports`, or every port above its control port. */
export function publicRange(options: Pick<RelayOptions, 'ports' | 'port'>): PortRange {
  return options.ports ?? { first: options.port + 1, last: 65535 };
}

export type RelayTunable = Exclude<
  keyof RelayOptions,
  'port' | 'dataPort' | 'bind' | 'publicHost' | 'ports' | 'secret' | 'tls' | 'tlsFiles' | 'stateFile' | 'tenantsFile' | 'namesPorts' | 'namesDomain' | 'allow' | 'deny' | 'publicProxyFrom'
>;

/** The client limits this machine can hold (src/config/limits.ts), read once at start. */
export const DERIVED_LIMITS: DerivedLimits = deriveLimits(machineFigures());

export const RELAY_DEFAULTS: Readonly<Pick<RelayOptions, RelayTunable>> = {
  maxServices: 256,
  maxClientsPerService: DERIVED_LIMITS.maxClientsPerService,
  maxPendingPerService: DERIVED_LIMITS.maxPendingPerService,
  maxTunnels: DERIVED_LIMITS.maxTunnels,
  maxWarmPerService: 64,
  maxWarmTotal: DERIVED_LIMITS.maxWarmTotal,
  handshakeTimeoutMs: 5_000,
  dialbackTimeoutMs: 10_000,
  heartbeatMs: 5_000,
  resumeGraceMs: 60_000,
  drainTimeoutMs: 10_000,
  holdTimeoutMs: 10_000,
  probeIntervalMs: 30_000,
  maxClientsPerIp: 0,
  maxConnectRate: 0,
  idleTimeoutMs: 0,
};

/** A peer is declared dead after this many heartbeat intervals of silence. */
export const HEARTBEAT_MISSES = 3;

/** TCP keepalive on every socket, as a second line of defence behind the heartbeat. */
export const KEEPALIVE_DELAY_MS = 15_000;

export const CLIENT_DEFAULTS = {
  /** Reconnect backoff: first delay, cap, and the jitter fraction. */
  backoffInitialMs: 250,
  backoffMaxMs: 30_000,
  backoffJitter: 0.3,
  /** Time allowed to connect and finish a registration or a dial-back handshake. */
  handshakeTimeoutMs: 10_000,
  /** A self-sizing pool: at least one parked connection, more when clients arrive together. */
  prewarm: 'auto',
} as const;
