import type { Server, Socket } from 'node:net';
import { CLIENT_DEFAULTS } from '../config/defaults.js';
import { checkOption, checkPort, LIBRARY_TIMEOUT, SERVICE_RULES } from '../config/rules.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { TENANT_NAME, TENANT_NAME_RULE } from '../protocol/messages.js';
import type { BackoffPolicy } from './backoff.js';
import { RESUME_KEY } from './resume-file.js';
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
  /** Speak TLS to the relay (which then needs --tls-cert/--tls-key): true, or options. */
  tls?: boolean | RelayTlsOptions;
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

/** Options of {@link RelayRegistration.close}. */
export interface CloseOptions {
  /**
   * Tell the relay this service is gone for good: its port is freed and clients are
   * refused at once, instead of being held for a restart. Default: true without a
   * resume file (such a service can never come back for its port), false with one.
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
  if (options.resumeKey !== undefined && !RESUME_KEY.test(options.resumeKey)) throw new UsageError('resumeKey must be 32 hex digits');
  if (options.tenant !== undefined && !TENANT_NAME.test(options.tenant)) {
    throw new UsageError(`tenant must be ${TENANT_NAME_RULE}, got "${String(options.tenant).slice(0, 70)}"`);
  }
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
