import type { Socket } from 'node:net';
import type { Argv } from 'yargs';
import type { RelayClientOptions } from '../client/options.js';
import { listenViaRelay, type RelayRegistration } from '../client/registration.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { OpenConnections } from '../net/open-connections.js';
import { TENANT_NAME, TENANT_NAME_RULE } from '../protocol/messages.js';
import { flagValue, SERVICE_RULES } from '../config/rules.js';
import { fileArg, loggerFor, onStopSignals, portArg, usageFailure, withLogOptions } from './common.js';

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
      .option('public-port', { type: 'string', describe: 'Ask for this public port (another is given if it is taken)' })
      .option('prewarm', { type: 'string', default: '0', describe: "Idle data connections kept open so new clients start at once: N, or 'auto' (as many as recent arrivals need)" })
      .option('drain-timeout', { type: 'number', default: 10, describe: 'Seconds open connections may finish after SIGTERM' })
      .option('resume-file', { type: 'string', describe: 'File keeping this service\'s resume key (created on first use): a restart gets the same public port, and clients wait for it' })
      .option('leave-on-exit', { type: 'boolean', default: false, describe: 'On SIGTERM, free the public port at once even with --resume-file (a final stop, not a restart)' })
      .strict()
      .help()
      .version(false),
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

interface ServiceArgs {
  relayhost?: string | undefined;
  relayport?: string | undefined;
  secret?: string | undefined;
  tenant?: string | undefined;
  tls: boolean;
  ca?: string | undefined;
  publicPort?: string | undefined;
  prewarm: string;
  drainTimeout: number;
  resumeFile?: string | undefined;
  leaveOnExit: boolean;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  logFormat: 'json' | 'pretty';
}

/**
 * Registers `handle` with the relay, prints the contract line on stdout at every
 * registration, exits non-zero when the relay refuses for good, and on SIGTERM leaves
 * the relay and lets open connections finish.
 */
export function runService(program: string, args: ServiceArgs, handle: (socket: Socket, log: Logger) => void): void {
  let relayPort: number;
  let publicPort: number | undefined;
  let ca: Buffer | undefined;
  let drainTimeoutMs: number;
  let prewarm: number | 'auto';
  try {
    ca = args.ca === undefined ? undefined : fileArg('--ca', args.ca);
    if (!args.relayhost) throw new UsageError('RELAYHOST is missing');
    relayPort = portArg('RELAYPORT', args.relayport);
    publicPort = args.publicPort === undefined ? undefined : portArg('--public-port', args.publicPort);
    prewarm = prewarmArg(args.prewarm);
    if (args.tenant && !TENANT_NAME.test(args.tenant)) throw new UsageError(`--tenant must be ${TENANT_NAME_RULE}, got "${args.tenant.slice(0, 70)}"`);
    drainTimeoutMs = flagValue(SERVICE_RULES.drainTimeoutMs, args.drainTimeout);
  } catch (err) {
    return usageFailure(program)(undefined, err as Error);
  }
  const log = loggerFor(program, args);
  const open = new OpenConnections();
  const options: RelayClientOptions = {
    host: args.relayhost,
    port: relayPort,
    logger: log,
    ...(args.secret ? { secret: args.secret } : {}),
    ...(args.tenant ? { tenant: args.tenant } : {}),
    ...(ca !== undefined ? { tls: { ca } } : args.tls ? { tls: true } : {}),
    ...(publicPort === undefined ? {} : { publicPort }),
    ...(prewarm === 'auto' || prewarm > 0 ? { prewarm } : {}),
    ...(args.resumeFile ? { resumeFile: args.resumeFile } : {}),
  };
  const deliver = (socket: Socket): void => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    handle(socket, log);
  };
  let tunnel: RelayRegistration;
  try {
    tunnel = listenViaRelay(deliver, options);
  } catch (err) {
    // An unreadable or malformed --resume-file.
    return usageFailure(program)(undefined, err as Error);
  }
  tunnel.on('established', ({ address }: { address: string }) => {
    process.stdout.write(`established relay address: ${address}\n`);
  });
  tunnel.on('error', (err: Error) => {
    process.stderr.write(`${program}: ${err.message}\n`);
    process.exit(1);
  });
  // A connection cut here must reach its public client as a reset (the relay passes a
  // reset on); a FIN would pass a truncated transfer off as a complete one.
  const cut = (): Promise<boolean> => open.resetAll(CUT_SETTLE_MS);
  onStopSignals(
    log,
    async () => {
      tunnel.close(args.leaveOnExit ? { leave: true } : {});
      if (!(await open.whenEmpty(drainTimeoutMs))) {
        log.warn({ connections: open.size }, 'drain timeout: resetting open connections');
        await cut();
      }
    },
    cut,
  );
}
