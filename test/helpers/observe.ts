/**
 * What a test sees of a running relay from outside: /proc figures of its process,
 * whether a port refuses connections, and the lines of its log.
 */
import { connect } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { eventually, within } from './net.js';

/** Resident memory of a process in KiB, from /proc/PID/status. */
export function rssKiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]);
}

/** Open file descriptors of a process (sockets included). */
export function openFiles(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Whether a process exists and is not a zombie. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** Whether a TCP connection to 127.0.0.1:port is refused (true) or accepted (false). */
export async function connectionRefused(port: number): Promise<boolean> {
  const socket = connect({ port, host: '127.0.0.1' });
  try {
    return await within(
      new Promise<boolean>((resolve) => {
        socket.once('connect', () => resolve(false));
        socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
      }),
      3000,
      `connecting to ${port}`,
    );
  } finally {
    socket.destroy();
  }
}

/**
 * Waits until connecting to the port is refused, for at most ms; resolves with how long
 * that took. A closed listener emits nothing the test can see, so this polls.
 */
export async function refusedWithin(port: number, ms: number): Promise<number> {
  const started = Date.now();
  await eventually(() => connectionRefused(port), ms, `port ${port} to refuse connections`);
  return Date.now() - started;
}

/**
 * Refusals the relay accounted for in its log: one line each, or, past its rate limit,
 * a count in a summary line ("suppressed":N).
 */
export function refusalsLogged(lines: string[]): number {
  let total = 0;
  for (const line of lines) {
    if (/"msg":"connection (refused|dropped)/.test(line)) total++;
    const suppressed = /"suppressed":(\d+)/.exec(line);
    if (suppressed !== null) total += Number(suppressed[1]);
  }
  return total;
}

/** Lines of a child's stderr log that match all the given patterns. */
export function countLines(lines: string[], ...patterns: RegExp[]): number {
  return lines.filter((line) => patterns.every((pattern) => pattern.test(line))).length;
}

/** A regex matching a pino JSON line that contains every fragment (in any order). */
export function logLine(...fragments: string[]): RegExp {
  const escaped = fragments.map((fragment) => `(?=.*${fragment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')})`);
  return new RegExp(`^${escaped.join('')}.*$`);
}
