/**
 * The C side of the bench (scripts/bench/native/): compiles benchtool into
 * bench-results/ (gitignored) at every run, so it always matches its sources, and
 * wraps each of its modes as a typed call. Every call runs benchtool as its own
 * process, so the load generator never shares an event loop with the bench.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT, runJson, startProcess, tail, type Proc } from './procs.js';

const HOST = '127.0.0.1';

export function buildBenchtool(): string {
  const sourceDir = path.join(ROOT, 'scripts', 'bench', 'native');
  const outDir = path.join(ROOT, 'bench-results');
  mkdirSync(outDir, { recursive: true });
  const binary = path.join(outDir, 'benchtool');
  const sources = readdirSync(sourceDir)
    .filter((f) => f.endsWith('.c'))
    .map((f) => path.join(sourceDir, f));
  try {
    execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-pthread', '-o', binary, ...sources], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? String(err);
    throw new Error(`cannot compile the C load generator (is cc installed? apt-get install gcc):\n${stderr}`);
  }
  return binary;
}

export interface Tool {
  binary: string;
}

export async function startBackend(tool: Tool): Promise<{ proc: Proc; port: number }> {
  // The backend lives as long as the bench: no alarm, PDEATHSIG covers a crash.
  const proc = startProcess('backend', tool.binary, ['server'], { env: { BENCHTOOL_ALARM_S: '0' } });
  const match = await proc.waitLine(/"port":(\d+)/, 5000);
  return { proc, port: Number(match[1]) };
}

export interface TputResult {
  bytes: number;
  seconds: number;
  /** The load generator's own CPU seconds. */
  cpu: number;
}

export function tput(tool: Tool, port: number, direction: 'up' | 'down', bytesPerStream: number, streams: number): Promise<TputResult> {
  // 0.1 Gbit/s is the slowest rate we wait for; anything slower is a failure.
  const timeoutMs = 10_000 + ((bytesPerStream * streams * 8) / 1e8) * 1000;
  return runJson('benchtool tput', tool.binary, ['tput', HOST, String(port), direction, String(bytesPerStream), String(streams)], timeoutMs);
}

export interface LatencyResult {
  count: number;
  p50: number;
  p99: number;
  failed?: number;
  lastError?: string;
}

export function rtt(tool: Tool, port: number, size: number, count: number, warmup: number): Promise<LatencyResult> {
  return runJson('benchtool rtt', tool.binary, ['rtt', HOST, String(port), String(size), String(count), String(warmup)], 30_000 + count * 10);
}

/** `prelude`: bytes sent first on every connection, for a names port (an HTTP request naming the host). */
export function firstEcho(tool: Tool, port: number, count: number, warmup: number, prelude?: string): Promise<LatencyResult> {
  return runJson('benchtool first', tool.binary, ['first', HOST, String(port), String(count), String(warmup)], 30_000 + count * 50, preludeEnv(prelude));
}

export interface ConnsResult {
  ok: number;
  failed: number;
  seconds: number;
  cpu: number;
  errors: Record<string, number>;
}

export function conns(tool: Tool, port: number, workers: number, seconds: number, prelude?: string): Promise<ConnsResult> {
  return runJson('benchtool conns', tool.binary, ['conns', HOST, String(port), String(workers), String(seconds)], seconds * 1000 + 15_000, preludeEnv(prelude));
}

const preludeEnv = (prelude: string | undefined): Record<string, string> => (prelude === undefined ? {} : { BENCH_PRELUDE: prelude });

export interface HoldOpened {
  open: number;
  echoed: number;
  refused: number;
  failed: number;
  seconds: number;
  lastError: string;
}

export interface HoldChecked {
  echoed: number;
  failed: number;
  seconds: number;
}

/** An interactive benchtool hold: opens the tunnels, then checks and closes them on request. */
export class Hold {
  readonly #proc: Proc;
  #answers = 0;

  constructor(tool: Tool, port: number, count: number, batch: number, alarmS: number) {
    this.#proc = startProcess('benchtool hold', tool.binary, ['hold', HOST, String(port), String(count), String(batch)], {
      stdin: 'pipe',
      env: { BENCHTOOL_ALARM_S: String(alarmS) },
    });
  }

  async #next<T>(phase: string, timeoutMs: number): Promise<T> {
    const index = this.#answers++;
    const deadline = Date.now() + timeoutMs;
    // Answers arrive in order, one line each; wait for the index-th.
    while (Date.now() < deadline) {
      const line = this.#proc.stdout.filter((l) => l.startsWith('{'))[index];
      if (line !== undefined) {
        const parsed = JSON.parse(line) as T & { phase: string };
        if (parsed.phase !== phase) throw new Error(`benchtool hold: expected ${phase}, got ${line}`);
        return parsed;
      }
      if (!this.#proc.alive()) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`benchtool hold: no ${phase} answer within ${timeoutMs} ms; stderr: ${tail(this.#proc)}`);
  }

  opened(timeoutMs: number): Promise<HoldOpened> {
    return this.#next('open', timeoutMs);
  }

  check(timeoutMs: number): Promise<HoldChecked> {
    this.#proc.child.stdin?.write('check\n');
    return this.#next('check', timeoutMs);
  }

  async close(timeoutMs: number): Promise<void> {
    this.#proc.child.stdin?.end('close\n');
    await this.#next('closed', timeoutMs);
    await Promise.race([this.#proc.exited, new Promise((resolve) => setTimeout(resolve, 2000))]);
  }

  get proc(): Proc {
    return this.#proc;
  }
}
