import { readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import { createLogger, LOG_LEVELS, type LogFormat, type Logger } from '../log.js';
import { UsageError } from '../errors.js';
import { splitHostPort } from '../protocol/messages.js';
import { parseCredentials, type BasicCredentials } from '../relay/basic-auth.js';

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

export function positiveArg(name: string, value: unknown): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${name} must be a positive number, got "${String(value)}"`);
  return n;
}

/** Options every program takes, so logs are configured the same way everywhere. */
export function withLogOptions<T>(argv: Argv<T>) {
  return argv
    .option('log-level', { choices: LOG_LEVELS, default: 'info' as const, describe: 'Least severe log level written to stderr' })
    .option('log-format', { choices: ['json', 'pretty'] as const, default: 'json' as const, describe: 'JSON lines for machines, or readable lines' });
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

/**
 * First SIGTERM/SIGINT starts `stop`, which exits 0 when it is done; a second one
 * exits at once with status 1.
 */
export function onStopSignals(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'stopping (send the signal again to exit at once)');
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: String(err) }, 'error while stopping');
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
