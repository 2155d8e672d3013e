import type { Server, Socket } from 'node:net';
import { CLIENT_DEFAULTS } from '../config/defaults.js';
import { checkOption, checkPort, cidrsOption, LIBRARY_TIMEOUT, SERVICE_RULES } from '../config/rules.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { MAX_ACL_CHARS } from '../protocol/acl-options.js';
import { formatCidr, type Cidr } from '../protocol/cidr.js';
import { TENANT_NAME, TENANT_NAME_RULE } from '../protocol/messages.js';
import { isServiceName, SERVICE_NAME_RULE } from '../protocol/names.js';
import type { BackoffPolicy } from './backoff.js';
import { loadResumeKey, RESUME_KEY } from './resume-file.js';
import type { RelayTlsOptions } from './transport.js';

/** Options of {@link listenViaRelay}. */
export interface RelayClientOptions {
  /**
   * The relay's host name or address, as this program reaches it. A comma-separated
   * list names the nodes of a relay fleet: the service registers with every address of
   * every name, all with the same resume key (see docs/operations.md, fleet).
   */
  host: string;
  /** The relay's control port (the PORT of `./relay PORT`). */
  port: number;
  /** The relay's shared secret, if it was started with one; with tenants, one of this tenant's secrets. */
  secret?: string;
  /** The tenant to register as, on a relay started with `--tenants` (its `secret` goes with it). */
  tenant?: string;
  /**
   * Only public clients from these ranges (CIDR, like `"192.0.2.0/24"`; a bare address is
   * one host) may connect, within what the relay and the tenant allow. The relay must
   * support it (feature `acl`): an older one is refused with an `acl` error, never served open.
   */
  allow?: readonly string[];
  /** Public clients from these ranges are reset (feature `acl`, as `allow`). */
  deny?: readonly string[];
  /** Speak TLS to the relay (which then needs --tls-cert/--tls-key): true, or options. */
  tls?: boolean | RelayTlsOptions;
  /**
   * Be reached by name on the relay's shared names ports, at NAME.DOMAIN (`www`, `api.eu`,
   * or a wildcard `*` / `*.eu`), routed by TLS SNI or HTTP Host, instead of on a port of
   * its own. A relay that cannot give names stops the registration (`no-names`).
   */
  name?: string;
  /** Ask for this public port (the relay gives another if it is taken). */
  publicPort?: number;
  /**
   * Keep this many idle data connections open so a new client needs no dial-back; or
   * `'auto'` (the default): as many as recent arrivals need, between 1 and the relay's
   * --max-warm. 0 turns prewarming off: every client is then dialed back.
   */
  prewarm?: number | 'auto';
  /**
   * A file holding this service's resume key (created, mode 0600, on first use): a
   * restarted process with the same file gets the same public port back, and public
   * clients that arrive while it restarts are held by the relay until it is back.
   */
  resumeFile?: string;
  /** A resume key (32 hex digits) to register with, instead of one from resumeFile or the relay. */
  resumeKey?: string;
  /**
   * A file holding a pool key (created, mode 0600, on first use, as a resume file; copy it
   * to every replica): every process holding the key serves the same public address at
   * once, and the relay gives each client to the least loaded ready member. The address
   * belongs to the key, so neither resumeFile nor resumeKey goes with it. Needs a relay
   * that knows pools: one that does not stops the registration (`pool` error).
   */
  poolFile?: string;
  /** A pool key (32 hex digits) to join with, instead of one from poolFile. */
  poolKey?: string;
  /**
   * Pool members only: asked at each CONNECT, before the dial-back is sent (which waits for
   * the answer; the data connection is opened meanwhile). `'decline'` hands the client back
   * to the relay, which offers it to another member with its bytes intact; an Admission
   * serves the client once it arrives. A client on a prewarmed connection arrives
   * connected and is not asked.
   */
  admit?: (client: { address: string; port: number }) => Admission | 'decline' | Promise<Admission | 'decline'>;
  /** Set on the extra registrations of a fleet (internal): they report fleet nodes instead of joining them. */
  fleetMember?: boolean;
  /** pino logger; silent by default. */
  logger?: Logger;
  /** Reconnect backoff in ms; see docs/integrating.md. */
  backoff?: { initialMs?: number; maxMs?: number; jitter?: number };
  handshakeTimeoutMs?: number;
}

/** The public address a relay gave this program. */
export interface PublicAddress {
  host: string;
  port: number;
  /** `host:port`, as people type it. */
  address: string;
}

/** What {@link RelayClientOptions.admit} made ready for one client. */
export interface Admission {
  /** The client arrived: serve its socket (it is not handed to the target). */
  serve(socket: Socket): void;
  /** No client comes after all (the dial-back failed): release what was made ready for it. */
  cancel(): void;
}

/** Options of {@link RelayRegistration.close}. */
export interface CloseOptions {
  /**
   * Tell the relay this service is gone for good: its port is freed and clients are
   * refused at once, instead of being held for a restart. Default: true without a
   * resume file or pool key (such a service can never come back for its port), false with one.
   */
  leave?: boolean;
}

/** Where relayed clients go: a server of any kind, or a plain connection callback. */
export type ConnectionTarget = Server | ((socket: Socket) => void);

/** Checks listenViaRelay's options; throws a UsageError naming the first bad one. */
export function validateClientOptions(options: RelayClientOptions): void {
  if (typeof options.host !== 'string' || options.host === '') throw new UsageError(`host must be the relay's host name or address, got ${String(options.host)}`);
  checkPort('port', options.port, 1);
  if (options.publicPort !== undefined) checkPort('publicPort', options.publicPort, 1);
  if (options.name !== undefined && (typeof options.name !== 'string' || !isServiceName(options.name))) {
    throw new UsageError(`name must be ${SERVICE_NAME_RULE}, got "${String(options.name).slice(0, 70)}"`);
  }
  if (options.resumeKey !== undefined && !RESUME_KEY.test(options.resumeKey)) throw new UsageError('resumeKey must be 32 hex digits');
  checkPoolOptions(options);
  if (options.tenant !== undefined && !TENANT_NAME.test(options.tenant)) {
    throw new UsageError(`tenant must be ${TENANT_NAME_RULE}, got "${String(options.tenant).slice(0, 70)}"`);
  }
  const lists = [aclOf(options, 'allow'), aclOf(options, 'deny')].flat();
  const chars = lists.reduce((n, cidr) => n + formatCidr(cidr).length + 1, 0);
  if (chars > MAX_ACL_CHARS) throw new UsageError(`allow and deny must fit in ${MAX_ACL_CHARS} characters together (the protocol's line limit), got ${chars}`);
  if (typeof options.prewarm === 'string' && options.prewarm !== 'auto') throw new UsageError(`prewarm must be 'auto' or a whole number from 0 to 1000, got "${options.prewarm}"`);
  if (typeof options.prewarm !== 'string' && options.prewarm !== undefined) checkOption('prewarm', SERVICE_RULES.prewarm, options.prewarm);
  if (options.handshakeTimeoutMs !== undefined) checkOption('handshakeTimeoutMs', LIBRARY_TIMEOUT, options.handshakeTimeoutMs);
  const backoff = options.backoff ?? {};
  if (backoff.initialMs !== undefined) checkOption('backoff.initialMs', LIBRARY_TIMEOUT, backoff.initialMs);
  if (backoff.maxMs !== undefined) checkOption('backoff.maxMs', LIBRARY_TIMEOUT, backoff.maxMs);
  if (backoff.jitter !== undefined && !(backoff.jitter >= 0 && backoff.jitter <= 1)) {
    throw new UsageError(`backoff.jitter must be a fraction from 0 to 1, got ${String(backoff.jitter)}`);
  }
}

function checkPoolOptions(options: RelayClientOptions): void {
  if (options.poolKey !== undefined && !RESUME_KEY.test(options.poolKey)) throw new UsageError('poolKey must be 32 hex digits');
  const pool = options.poolFile !== undefined || options.poolKey !== undefined;
  if (pool && (options.resumeFile !== undefined || options.resumeKey !== undefined)) {
    throw new UsageError("a pool key (poolFile, poolKey) cannot be combined with a resume key (resumeFile, resumeKey): a pool's address belongs to the pool key, shared by every member");
  }
  if (options.admit !== undefined && typeof options.admit !== 'function') throw new UsageError('admit must be a function');
}

/** The pool key the options give (poolKey, else the one in poolFile, made on first use); throws a UsageError for a bad file. */
export function poolKeyOf(options: RelayClientOptions): string | undefined {
  return options.poolKey ?? (options.poolFile === undefined ? undefined : loadResumeKey(options.poolFile, 'pool'));
}

/** `allow` or `deny` as ranges; a UsageError quoting the first bad one. */
export function aclOf(options: Pick<RelayClientOptions, 'allow' | 'deny'>, key: 'allow' | 'deny'): Cidr[] {
  return cidrsOption(key, options[key]);
}

/** The time allowed for a registration or a dial-back handshake. */
export function handshakeTimeoutOf(options: RelayClientOptions): number {
  return options.handshakeTimeoutMs ?? CLIENT_DEFAULTS.handshakeTimeoutMs;
}

/** The reconnect backoff asked for, defaults filled in. */
export function backoffPolicyOf(options: RelayClientOptions): BackoffPolicy {
  return {
    initialMs: options.backoff?.initialMs ?? CLIENT_DEFAULTS.backoffInitialMs,
    maxMs: options.backoff?.maxMs ?? CLIENT_DEFAULTS.backoffMaxMs,
    jitter: options.backoff?.jitter ?? CLIENT_DEFAULTS.backoffJitter,
  };
}
