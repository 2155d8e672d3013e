import { Writable } from 'node:stream';
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };
export type LogFormat = 'json' | 'pretty';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const OMITTED = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name']);

/** One readable line per record, for people at a terminal. */
function prettyLine(json: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const time = new Date(Number(record['time'])).toISOString().slice(11, 23);
  const level = LEVEL_NAMES[Number(record['level'])] ?? String(record['level']);
  const fields = Object.entries(record)
    .filter(([key]) => !OMITTED.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return `${time} ${level.padEnd(5)} ${String(record['msg'] ?? '')}${fields.length ? '  ' + fields.join(' ') : ''}\n`;
}

/**
 * Readable lines when a person is watching stderr, JSON lines when it goes anywhere else
 * (a pipe, a file, the journal), where a program reads it.
 */
export function defaultLogFormat(stderr: { isTTY?: boolean } = process.stderr): LogFormat {
  return stderr.isTTY ? 'pretty' : 'json';
}

/** Logs go to stderr only: stdout belongs to the contract lines. */
export function createLogger(options: { name: string; level: LevelWithSilent; format: LogFormat }): Logger {
  const base = { name: options.name, level: options.level, base: { pid: process.pid } };
  if (options.format === 'json') return pino(base, pino.destination({ fd: 2, sync: true }));
  const stderr = pino.destination({ fd: 2, sync: true });
  const pretty = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) stderr.write(prettyLine(line));
      callback();
    },
  });
  return pino(base, pretty);
}

/** For library users who pass no logger: quiet unless they ask. */
export const silentLogger: Logger = pino({ level: 'silent' });
