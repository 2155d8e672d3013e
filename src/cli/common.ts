import { readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import { createLogger, defaultLogFormat, LOG_LEVELS, type LogFormat, type Logger } from '../log.js';
import { UsageError } from '../errors.js';
import { splitHostPort } from '../protocol/addresses.js';
import { formatCidr, parseCidrList } from '../protocol/cidr.js';
import { parseCredentials, type BasicCredentials } from '../monitor/basic-auth.js';
import { readCertificatePair } from '../net/tls-accept.js';

/** The package's version, which --version prints: package.json's, read where the package is installed. */
export const PACKAGE_VERSION: string = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** A TCP port from the command line, or a UsageError naming the flag. */
export function portArg(name: string, value: unknown, allowZero = false): number {
  const text = String(value);
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535 || (port === 0 && !allowZero)) {
    throw new UsageError(`${name} must be a port number from ${allowZero ? 0 : 1} to 65535, got "${text}"`);
  }
  return port;
}

/** A file a flag names, read now so a typo is a usage error rather than a failure later. */
export function fileArg(name: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`cannot read ${name} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/**
 * The options of a `--config` file, for yargs' config parser, which shows an Error it
 * is given back (and one it catches as "Invalid JSON config file" for every cause).
 */
export function configFile(file: string): Record<string, unknown> | UsageError {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return new UsageError(`cannot read --config ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return new UsageError(`--config ${file} is not JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  const got = Array.isArray(parsed) ? 'an array' : parsed === null ? 'null' : typeof parsed;
  return new UsageError(`--config ${file} must hold one JSON object of options (keys as the long flags), got ${got}`);
}

/**
 * The PEM certificate and key --tls-cert and --tls-key name, checked now: a file that
 * is not PEM, or a key that is not the certificate's, is a usage error naming the file,
 * not a port that "cannot be opened" later.
 */
export function tlsFilesArg(certFile: string, keyFile: string): { cert: Buffer; key: Buffer } {
  try {
    return readCertificatePair({ cert: certFile, key: keyFile });
  } catch (err) {
    throw new UsageError((err as Error).message, { cause: err });
  }
}

/** Options every program takes, so logs are configured the same way everywhere. */
export function withLogOptions<T>(argv: Argv<T>) {
  return argv.option('log-level', { choices: LOG_LEVELS, default: 'info' as const, describe: 'Least severe log level written to stderr' }).option('log-format', {
    choices: ['json', 'pretty'] as const,
    default: defaultLogFormat(),
    defaultDescription: 'pretty on a terminal, else json',
    describe: 'JSON lines for machines, or readable lines',
  });
}

export function loggerFor(name: string, args: { logLevel: (typeof LOG_LEVELS)[number]; logFormat: LogFormat }): Logger {
  return createLogger({ name, level: args.logLevel, format: args.logFormat });
}

/**
 * Usage errors become one line on stderr and exit 2; nothing else is caught here.
 * `required` names the positional arguments, for yargs' "not enough arguments".
 */
export function usageFailure(program: string, required = '') {
  return (message: string | undefined, err: Error | undefined): never => {
    let text = err instanceof UsageError || err === undefined ? (message ?? err?.message) : err.message;
    if (text?.startsWith('Not enough non-option arguments')) text = `missing argument: ${program} ${required}`;
    text = text?.trim().replace(/\s*\n\s*/g, ' '); // yargs spreads some messages over lines
    process.stderr.write(`${program}: ${text ?? 'bad command line'} (see '${program} --help')\n`);
    process.exit(2);
  };
}

/** How long a second signal waits for the cut connections to be reset (and logged) before exiting. */
const FORCED_EXIT_MS = 1_000;

/**
 * First SIGTERM/SIGINT starts `stop`, which exits 0 when it is done. A second one runs
 * `cut` (reset whatever is still open, so no peer mistakes the exit for a clean end)
 * and exits with status 1 once it is done, within FORCED_EXIT_MS; a third exits at once.
 */
export function onStopSignals(log: Logger, stop: () => Promise<void>, cut: () => Promise<unknown>): void {
  let signals = 0;
  const handler = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 2) process.exit(1);
    if (signals === 2) {
      log.warn({ signal }, 'second signal: cutting open connections and exiting now');
      const exit = (): never => process.exit(1);
      setTimeout(exit, FORCED_EXIT_MS);
      cut().then(exit, exit);
      return;
    }
    log.info({ signal }, 'stopping (send the signal again to exit at once)');
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

/** `--metrics-auth USER:PASS`; the error never repeats the text, which holds a password. */
export function metricsAuthArg(text: string): BasicCredentials {
  const credentials = parseCredentials(text);
  if (credentials === undefined) throw new UsageError('--metrics-auth must be USER:PASS with neither empty');
  return credentials;
}

/** `HOST:PORT`, or `PORT` on 127.0.0.1; the listener's port may be 0. */
export function parseListen(name: string, text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(':');
  if (colon < 0) return { host: '127.0.0.1', port: portArg(name, text, true) };
  const host = splitHostPort(`${text.slice(0, colon)}:1`)?.host;
  if (host === undefined) throw new UsageError(`${name} must be HOST:PORT or PORT, got "${text}"`);
  return { host, port: portArg(name, text.slice(colon + 1), true) };
}

/**
 * `CIDR[,CIDR...]` (--allow, --deny, --public-proxy-from; a list of them in a --config
 * file), each range canonical, or a UsageError naming the flag and the bad text.
 */
export function cidrListArg(name: string, value: unknown): string[] {
  const text = Array.isArray(value) && value.every((item) => typeof item === 'string') ? value.join(',') : value;
  if (typeof text !== 'string') throw new UsageError(`${name} must be CIDR[,CIDR...] (like 10.0.0.0/8,2001:db8::/32)`);
  const list = parseCidrList(text);
  if (typeof list === 'string') throw new UsageError(`${name} must be CIDR[,CIDR...] (like 10.0.0.0/8,2001:db8::/32): ${list}`);
  return list.map(formatCidr);
}
