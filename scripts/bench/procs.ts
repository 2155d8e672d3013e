/**
 * Every process the bench starts goes through here: each is spawned in its own
 * process group, remembered by PID, and its group is killed when the bench ends,
 * whether it ends normally, by Ctrl-C, by SIGTERM or by an uncaught error. Nothing
 * is ever killed by name, only the groups this module created.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root, whether this runs compiled (dist/scripts/bench/) or not. */
export const ROOT = path.resolve(here, path.basename(path.resolve(here, '../..')) === 'dist' ? '../../..' : '../..');

export interface Proc {
  name: string;
  pid: number;
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The first stdout line matching, or a rejection after ms or when the process exits. */
  waitLine(pattern: RegExp, ms: number): Promise<RegExpMatchArray>;
  alive(): boolean;
}

const groups = new Set<number>();

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

export function startProcess(name: string, command: string, args: string[], options: { env?: Record<string, string>; stdin?: 'pipe' | 'ignore' } = {}): Proc {
  const child = spawn(command, args, {
    cwd: ROOT,
    detached: true,
    stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${name} (${command})`);
  groups.add(pid);
  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      running = false;
      groups.delete(pid);
      resolve({ code, signal });
    }),
  );
  child.on('error', () => {});
  const lines = { stdout: [] as string[], stderr: [] as string[] };
  const waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.stdout.push(line);
    for (const waiter of [...waiters]) {
      const match = line.match(waiter.pattern);
      if (match) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(match);
      }
    }
  });
  // Keep only the tail of stderr: a chatty child must not grow the bench's memory.
  createInterface({ input: child.stderr! }).on('line', (line) => {
    lines.stderr.push(line);
    if (lines.stderr.length > 200) lines.stderr.splice(0, 100);
  });
  const proc: Proc = {
    name,
    pid,
    child,
    stdout: lines.stdout,
    stderr: lines.stderr,
    exited,
    alive: () => running,
    waitLine(pattern, ms) {
      const seen = lines.stdout.map((line) => line.match(pattern)).find((m) => m !== null);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: no line matching ${pattern} within ${ms} ms; stderr: ${tail(proc)}`)), ms);
        waiters.push({
          pattern,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
        void exited.then(({ code, signal }) => {
          clearTimeout(timer);
          reject(new Error(`${name} exited (${code ?? signal}) before printing ${pattern}; stderr: ${tail(proc)}`));
        });
      });
    },
  };
  return proc;
}

export function tail(proc: Proc, lines = 5): string {
  return proc.stderr.slice(-lines).join(' | ') || '(empty)';
}

/** SIGTERM to the group, SIGKILL after graceMs if it is still there. */
export async function stopProcess(proc: Proc, graceMs = 1500): Promise<void> {
  if (!proc.alive()) return;
  killGroup(proc.pid, 'SIGTERM');
  const timer = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), graceMs).unref());
  if ((await Promise.race([proc.exited, timer])) === 'late') {
    killGroup(proc.pid, 'SIGKILL');
    await Promise.race([proc.exited, new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
  }
  groups.delete(proc.pid);
}

/** Synchronous, for exit paths that cannot wait: SIGKILL every group still known. */
export function killAllNow(): void {
  for (const pid of groups) killGroup(pid, 'SIGKILL');
  groups.clear();
}

/** Runs a process to completion and parses the last JSON line of its stdout. */
export async function runJson<T>(name: string, command: string, args: string[], timeoutMs: number, env: Record<string, string> = {}): Promise<T> {
  const proc = startProcess(name, command, args, { env });
  const timer = setTimeout(() => killGroup(proc.pid, 'SIGKILL'), timeoutMs);
  const { code, signal } = await proc.exited;
  clearTimeout(timer);
  // 'exit' can come before the last lines of stdout were read: wait for the stream's end
  // (seen: a run that exited 0 was reported as failed for want of its JSON line).
  const stdout = proc.child.stdout;
  if (stdout !== null && !stdout.destroyed && !stdout.readableEnded) {
    await new Promise((resolve) => {
      stdout.once('close', resolve);
      setTimeout(resolve, 2000).unref();
    });
  }
  const last = proc.stdout.filter((line) => line.startsWith('{')).at(-1);
  const parsed = last === undefined ? undefined : (JSON.parse(last) as T & { error?: string });
  if (parsed === undefined || parsed.error !== undefined || code !== 0) {
    const why = signal === 'SIGKILL' ? `timed out after ${timeoutMs} ms` : (parsed?.error ?? `exit ${code ?? signal}`);
    throw new Error(`${name} ${args.join(' ')}: ${why}; stderr: ${tail(proc)}`);
  }
  return parsed;
}

let installed = false;

/** Kills every started group on exit, SIGINT, SIGTERM, uncaught errors and rejections. */
export function installCleanup(): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      process.stderr.write(`\nbench: ${signal}: stopping every process it started\n`);
      killAllNow();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
  const fatal = (err: unknown): void => {
    process.stderr.write(`bench: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    killAllNow();
    process.exit(1);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
