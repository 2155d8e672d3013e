import type { Socket } from 'node:net';
import type { Argv } from 'yargs';
import type { RelayClientOptions } from '../client/options.js';
import { listenViaRelay, type RelayRegistration } from '../client/registration.js';
import { UsageError, type RelayError } from '../errors.js';
import type { Logger } from '../log.js';
import { OpenConnections } from '../net/open-connections.js';
import { TENANT_NAME, TENANT_NAME_RULE } from '../protocol/messages.js';
import { isServiceName, SERVICE_NAME_RULE } from '../protocol/names.js';
import { flagValue, SERVICE_RULES } from '../config/rules.js';
import { cidrListArg, fileArg, loggerFor, onStopSignals, PACKAGE_VERSION, portArg, usageFailure, withLogOptions } from './common.js';

/** How long resetting the open connections may take before the program exits anyway. */
const CUT_SETTLE_MS = 1_000;

/** The arguments of ./echoserver and ./expose that are not flags (and so have no variable). */
export const SERVICE_POSITIONALS = ['relayhost', 'relayport'] as const;

/** What ./echoserver and ./expose have in common: the relay to use and how. */
export function withServiceOptions<T>(argv: Argv<T>) {
  return withLogOptions(
    argv
      .positional('relayhost', { type: 'string', describe: 'Host name or address of the relay' })
      .positional('relayport', { type: 'string', describe: 'Control port of the relay (its PORT)' })
      .option('secret', { type: 'string', describe: "The relay's secret, if it has one (also RELAY_SECRET); with --tenant, one of that tenant's secrets" })
      .option('tenant', { type: 'string', describe: 'Register as this tenant, on a relay started with --tenants (also RELAY_TENANT)' })
      .option('tls', { type: 'boolean', default: false, describe: 'Speak TLS to the relay (started with --tls-cert)' })
      .option('ca', { type: 'string', describe: "PEM CA of the relay's certificate, for a private CA (implies --tls)" })
      .option('name', { type: 'string', describe: "Be reached at NAME.DOMAIN on the relay's names ports (routed by TLS SNI or HTTP Host) instead of on a port of its own" })
      .option('allow', { type: 'string', describe: 'CIDR[,CIDR...]: only public clients from these ranges may connect (within what the relay allows)' })
      .option('deny', { type: 'string', describe: 'CIDR[,CIDR...]: public clients from these ranges are reset' })
      .option('public-port', { type: 'string', describe: 'Ask for this public port (another is given if it is taken)' })
      .option('prewarm', {
        type: 'string',
        default: 'auto',
        describe: "Idle data connections kept open so new clients start at once: 'auto' (at least 1, as many as recent arrivals need), N, or 0 (none: every client is dialed back)",
      })
      .option('drain-timeout', { type: 'string', default: '10', describe: 'Seconds open connections may finish after SIGTERM' })
      .option('resume-file', { type: 'string', describe: "File keeping this service's resume key (created on first use): a restart gets the same public port, and clients wait for it" })
      .option('pool-file', {
        type: 'string',
        describe: 'File keeping a pool key (created on first use; copy it to every replica): every process with it serves the same public address, the relay spreading clients among them',
      })
      .option('leave-on-exit', { type: 'boolean', default: false, describe: 'On SIGTERM, free the public port at once even with --resume-file or --pool-file (a final stop, not a restart)' })
      .strict()
      .help()
      .version(PACKAGE_VERSION),
  );
}

function prewarmArg(text: string): number | 'auto' {
  if (text === 'auto') return 'auto';
  try {
    return flagValue(SERVICE_RULES.prewarm, text);
  } catch (err) {
    throw new UsageError(`--prewarm must be 'auto' or a whole number from 0 to ${SERVICE_RULES.prewarm.max}, got "${text}"`, { cause: err });
  }
}

/** `--allow`/`--deny` as the library's list, checked here so the error names the flag. */
function aclArg(flag: string, key: 'allow' | 'deny', text: string | undefined): { allow?: string[]; deny?: string[] } {
  if (text === undefined) return {};
  return { [key]: cidrListArg(flag, text) };
}

interface ServiceArgs {
  relayhost?: string | undefined;
  relayport?: string | undefined;
  secret?: string | undefined;
  tenant?: string | undefined;
  tls: boolean;
  ca?: string | undefined;
  publicPort?: string | undefined;
  name?: string | undefined;
  prewarm: string;
  drainTimeout: string;
  resumeFile?: string | undefined;
  poolFile?: string | undefined;
  leaveOnExit: boolean;
  allow?: string | undefined;
  deny?: string | undefined;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  logFormat: 'json' | 'pretty';
}

/** The library options (without the logger) and the drain timeout the flags ask for; throws a UsageError. */
function serviceOptions(args: ServiceArgs): { options: Omit<RelayClientOptions, 'logger'>; drainTimeoutMs: number } {
  const ca = args.ca === undefined ? undefined : fileArg('--ca', args.ca);
  if (!args.relayhost) throw new UsageError('RELAYHOST is missing');
  const port = portArg('RELAYPORT', args.relayport);
  const publicPort = args.publicPort === undefined ? undefined : portArg('--public-port', args.publicPort);
  if (args.name !== undefined && !isServiceName(args.name)) throw new UsageError(`--name must be ${SERVICE_NAME_RULE}, got "${args.name.slice(0, 70)}"`);
  const prewarm = prewarmArg(args.prewarm);
  if (args.tenant && !TENANT_NAME.test(args.tenant)) throw new UsageError(`--tenant must be ${TENANT_NAME_RULE}, got "${args.tenant.slice(0, 70)}"`);
  const drainTimeoutMs = flagValue(SERVICE_RULES.drainTimeoutMs, args.drainTimeout);
  if (args.poolFile && args.resumeFile) {
    throw new UsageError("--pool-file and --resume-file cannot be used together: a pool's address belongs to the pool key, shared by every replica, not to one process's resume key");
  }
  const lists = { ...aclArg('--allow', 'allow', args.allow), ...aclArg('--deny', 'deny', args.deny) };
  const options = {
    host: args.relayhost,
    port,
    ...(args.secret ? { secret: args.secret } : {}),
    ...(args.tenant ? { tenant: args.tenant } : {}),
    ...(ca !== undefined ? { tls: { ca } } : args.tls ? { tls: true } : {}),
    ...(publicPort === undefined ? {} : { publicPort }),
    ...(args.name === undefined ? {} : { name: args.name }),
    prewarm,
    ...(args.resumeFile ? { resumeFile: args.resumeFile } : {}),
    ...(args.poolFile ? { poolFile: args.poolFile } : {}),
    ...lists,
  };
  return { options, drainTimeoutMs };
}

/** What a program adds to the library's options and does once registration has begun (./expose: admit, health checks). */
export interface ServiceHooks {
  admit?: (log: Logger, track: (socket: Socket) => void) => NonNullable<RelayClientOptions['admit']>;
  started?: (registration: RelayRegistration, log: Logger) => void;
}

/**
 * Registers `handle` with the relay, prints the contract line on stdout when the service
 * becomes reachable or its address changes (the library's `established`), exits non-zero
 * when the relay refuses for good or the settings cannot work, and on SIGTERM leaves
 * the relay (a pool member: drains first) and lets open connections finish.
 */
export function runService(program: string, args: ServiceArgs, handle: (socket: Socket, log: Logger) => void, hooks: ServiceHooks = {}): void {
  let planned: ReturnType<typeof serviceOptions>;
  try {
    planned = serviceOptions(args);
  } catch (err) {
    return usageFailure(program)(undefined, err as Error);
  }
  const log = loggerFor(program, args);
  const open = new OpenConnections();
  const track = (socket: Socket): void => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  };
  const deliver = (socket: Socket): void => {
    track(socket);
    handle(socket, log);
  };
  const admit = hooks.admit?.(log, track);
  let registration: RelayRegistration;
  try {
    registration = listenViaRelay(deliver, { ...planned.options, logger: log, ...(admit === undefined ? {} : { admit }) });
  } catch (err) {
    // An unreadable or malformed --resume-file.
    return usageFailure(program)(undefined, err as Error);
  }
  registration.on('established', ({ address }: { address: string }) => {
    process.stdout.write(`established relay address: ${address}\n`);
  });
  registration.on('error', (err: Error) => {
    process.stderr.write(`${program}: ${err.message}\n`);
    // Clients still connected are cut by this exit: a reset, never a FIN after part of a transfer.
    const exit = (): never => process.exit(exitCodeOf(err));
    open.resetAll(CUT_SETTLE_MS).then(exit, exit);
  });
  hooks.started?.(registration, log);
  stopOnSignals(log, registration, open, { leave: args.leaveOnExit, pool: planned.options.poolFile !== undefined, drainTimeoutMs: planned.drainTimeoutMs });
}

/**
 * 2 for a setting the user must change (RELAYHOST RELAYPORT reach no relay, --tls/--ca
 * do not fit it, or --name cannot be had there); 1 for the relay's own refusals (secret,
 * version, superseded).
 */
function exitCodeOf(err: Error): number {
  const code = (err as Partial<RelayError>).code;
  return code === 'not-a-relay' || code === 'tls' || code === 'no-names' || code === 'pool' || code === 'name' ? 2 : 1;
}

/**
 * SIGTERM: leave the relay, let open connections finish within the drain timeout, then
 * reset the rest. A pool member instead drains (DRAIN: the relay sends its clients to the
 * other members), lets its connections finish, and only then closes its control
 * connection, without LEAVE unless asked: the address stays reserved for the next deploy.
 */
function stopOnSignals(log: Logger, registration: RelayRegistration, open: OpenConnections, stop: { leave: boolean; pool: boolean; drainTimeoutMs: number }): void {
  // A connection cut here must reach its public client as a reset (the relay passes a
  // reset on); a FIN would pass a truncated transfer off as a complete one.
  const cut = (): Promise<boolean> => open.resetAll(CUT_SETTLE_MS);
  const finish = async (ms: number): Promise<void> => {
    if (!(await open.whenEmpty(ms))) {
      log.warn({ connections: open.size }, 'drain timeout: resetting open connections');
      await cut();
    }
  };
  onStopSignals(
    log,
    async () => {
      if (!stop.pool) {
        registration.close(stop.leave ? { leave: true } : {});
        return finish(stop.drainTimeoutMs);
      }
      const began = performance.now();
      log.info('draining: the relay sends new clients to the other members');
      await within(registration.drain(), stop.drainTimeoutMs);
      await finish(Math.max(0, stop.drainTimeoutMs - (performance.now() - began)));
      registration.close({ leave: stop.leave });
    },
    cut,
  );
}

/** Resolves when `promise` does, or after ms, whichever is first. */
function within(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
