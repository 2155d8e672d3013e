import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { within } from './net.js';

/** The repository root, whichever of src/ or dist/ this file runs from. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * Extra environment for a child that must not pick up the test runner's RELAY_SECRET:
 * an empty value is no secret, so the child runs with only the flags the test gives it.
 */
export const NO_ENV_SECRET: Readonly<Record<string, string>> = { RELAY_SECRET: '' };

export interface Child {
  process: ChildProcess;
  pid: number;
  stdout: string[];
  stderr: string[];
  /** Resolves with the first line (stdout or stderr as chosen) matching, or rejects after ms. */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp, ms?: number, from?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  signal(sig: NodeJS.Signals): void;
}

/**
 * Starts a program in its own process group and kills the whole group when the test
 * ends, pass or fail, so nothing outlives the test.
 */
export function start(t: TestContext, command: string, args: string[], env: Record<string, string> = {}): Child {
  const child = spawn(command, args, { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${command}`);
  const lines = { stdout: [] as string[], stderr: [] as string[] };
  const waiters: { stream: 'stdout' | 'stderr'; pattern: RegExp; from: number; resolve: (m: RegExpMatchArray) => void }[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  for (const stream of ['stdout', 'stderr'] as const) {
    createInterface({ input: child[stream]! }).on('line', (line) => {
      lines[stream].push(line);
      for (const waiter of [...waiters]) {
        const match = waiter.stream === stream && lines[stream].length > waiter.from ? line.match(waiter.pattern) : null;
        if (match) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(match);
        }
      }
    });
  }
  t.after(() => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  return {
    process: child,
    pid,
    stdout: lines.stdout,
    stderr: lines.stderr,
    exited,
    signal: (sig) => {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    },
    waitFor(stream, pattern, ms = 10_000, from = 0) {
      for (const line of lines[stream].slice(from)) {
        const match = line.match(pattern);
        if (match) return Promise.resolve(match);
      }
      const found = new Promise<RegExpMatchArray>((resolve) => waiters.push({ stream, pattern, from: Math.max(from, lines[stream].length), resolve }));
      const died = exited.then(({ code, signal }) => {
        throw new Error(`${command} exited (${code ?? signal}) before printing ${pattern}; stderr:\n${lines.stderr.slice(-10).join('\n')}`);
      });
      return within(Promise.race([found, died]), ms, `${command} to print ${pattern} on ${stream}; stderr so far:\n${lines.stderr.slice(-10).join('\n')}`);
    },
  };
}

export interface RelayProcess extends Child {
  port: number;
  dataPort: number;
  /**
   * The worker that runs the relay; `pid` is its master, the process to signal. Measure
   * memory and open files here: the master only holds the listening sockets.
   */
  workerPid: number;
}

/**
 * ./relay on a free control port (read back from its log), with the given extra flags;
 * `bin` is where the launcher is (an installed package's node_modules/.bin, say).
 */
export async function startRelay(t: TestContext, args: string[] = [], env: Record<string, string> = {}, bin = ROOT): Promise<RelayProcess> {
  const relay = start(t, path.join(bin, 'relay'), ['0', ...withWorkers(args)], env);
  const match = await relay.waitFor('stderr', /"pid":(\d+).*"controlPort":(\d+),"dataPort":(\d+)/);
  // With several workers the first one listening is not all: the master says when every one is.
  if (workersOf(args) > 1) await relay.waitFor('stderr', /master running/, 30_000);
  return { ...relay, workerPid: Number(match[1]), port: Number(match[2]), dataPort: Number(match[3]) };
}

/**
 * TEST_RELAY_WORKERS=N starts every relay of startRelay with `--workers N` (unless the
 * test chose), so that a test file can be run against a relay of several workers.
 */
export const RELAY_WORKERS = Number(process.env['TEST_RELAY_WORKERS'] ?? '1');

/** The relay's arguments with TEST_RELAY_WORKERS' --workers added (for a relay started without startRelay). */
export function withWorkers(args: string[]): string[] {
  return RELAY_WORKERS > 1 && !args.includes('--workers') ? [...args, '--workers', String(RELAY_WORKERS)] : args;
}

/** How many workers a relay started with these arguments (after withWorkers) runs. */
export function workersOf(args: string[]): number {
  const given = args.indexOf('--workers');
  return given >= 0 ? Number(args[given + 1]) || 1 : RELAY_WORKERS;
}

export interface ServiceProcess extends Child {
  publicHost: string;
  publicPort: number;
}

/** ./echoserver or ./expose, once it has printed its public address. */
export async function startService(t: TestContext, program: 'echoserver' | 'expose', args: string[], env: Record<string, string> = {}, bin = ROOT): Promise<ServiceProcess> {
  const service = start(t, path.join(bin, program), args, env);
  const match = await service.waitFor('stdout', /^established relay address: (.+):(\d+)$/);
  return { ...service, publicHost: match[1]!, publicPort: Number(match[2]) };
}
