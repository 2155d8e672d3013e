/**
 * Figures 1 to 5 for one path and one repetition. Each returns its samples and the
 * problems it saw (failures are results too: they are reported, not thrown away).
 */
import path from 'node:path';
import { conns, firstEcho, rtt, tput, type Tool } from './native.js';
import { clientCounts, type BenchPath } from './paths.js';
import { ROOT, runJson, sleep } from './procs.js';
import { descendants, treeCpuSeconds } from './proc-stats.js';
import type { Sample } from './report.js';

export interface Settings {
  tputBytes: number;
  tputBytesX4: number;
  rttCount: number;
  rttWarmup: number;
  firstCount: number;
  firstWarmup: number;
  connsWorkers: number;
  connsSeconds: number;
  /** Figure 7: this many bursts of burstSize new connections at once, burstGapMs apart. */
  bursts: number;
  burstSize: number;
  burstGapMs: number;
}

export interface Outcome {
  samples: Sample[];
  problems: string[];
}

const GIB = 2 ** 30;

/** socat's per-connection children must be gone (and reaped) before its CPU is read. */
async function forwardersSettled(p: BenchPath, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && p.forwarders.some((f) => descendants(f.pid).length > 0)) await sleep(20);
}

/** Figures 1 and 2: three bulk transfers, and the CPU every process spent on them. */
export async function measureBulk(tool: Tool, p: BenchPath, s: Settings): Promise<Outcome> {
  const snapshot = (): { forwarders: number[]; backend: number } => ({
    forwarders: p.forwarders.map((f) => treeCpuSeconds(f.pid)),
    backend: treeCpuSeconds(p.backendPid),
  });
  const runs = [
    { figure: 'tput-down', direction: 'down', bytes: s.tputBytes, streams: 1 },
    { figure: 'tput-up', direction: 'up', bytes: s.tputBytes, streams: 1 },
    { figure: 'tput-down-x4', direction: 'down', bytes: s.tputBytesX4, streams: 4 },
  ] as const;
  const samples: Sample[] = [];
  const spent = { forwarders: p.forwarders.map(() => 0), backend: 0, client: 0, bytes: 0 };
  for (const run of runs) {
    const before = snapshot();
    const result = await tput(tool, p.port, run.direction, run.bytes, run.streams);
    await forwardersSettled(p);
    const after = snapshot();
    samples.push({ path: p.name, figure: run.figure, value: (result.bytes * 8) / result.seconds / 1e9 });
    after.forwarders.forEach((cpu, i) => (spent.forwarders[i]! += cpu - before.forwarders[i]!));
    spent.backend += after.backend - before.backend;
    spent.client += result.cpu;
    spent.bytes += result.bytes;
  }
  const gib = spent.bytes / GIB;
  const forwarders = spent.forwarders.reduce((a, b) => a + b, 0);
  if (p.forwarders.length > 0) samples.push({ path: p.name, figure: 'cpu-forwarders', value: forwarders / gib });
  p.forwarders.forEach((f, i) => {
    if (f.name === 'relay') samples.push({ path: p.name, figure: 'cpu-relay', value: spent.forwarders[i]! / gib });
    if (f.name === 'expose') samples.push({ path: p.name, figure: 'cpu-expose', value: spent.forwarders[i]! / gib });
  });
  samples.push({ path: p.name, figure: 'cpu-total', value: (forwarders + spent.backend + spent.client) / gib });
  return { samples, problems: [] };
}

/** Figure 3: ping-pong on one open connection, 1 byte and 1 KiB. */
export async function measureRtt(tool: Tool, p: BenchPath, s: Settings): Promise<Outcome> {
  const small = await rtt(tool, p.port, 1, s.rttCount, s.rttWarmup);
  const large = await rtt(tool, p.port, 1024, s.rttCount, s.rttWarmup);
  return {
    samples: [
      { path: p.name, figure: 'rtt-1', value: small.p50, p99: small.p99 },
      { path: p.name, figure: 'rtt-1k', value: large.p50, p99: large.p99 },
    ],
    problems: [],
  };
}

/** Figure 4: connect() to the first echoed byte, one new connection at a time. */
export async function measureFirstEcho(tool: Tool, p: BenchPath, s: Settings): Promise<Outcome> {
  const result = await firstEcho(tool, p.port, s.firstCount, s.firstWarmup, p.prelude);
  const problems = result.failed ? [`first-echo: ${result.failed} of ${s.firstCount} connections failed (last: ${result.lastError})`] : [];
  return { samples: [{ path: p.name, figure: 'first-echo', value: result.p50, p99: result.p99 }], problems };
}

/** Figure 5: short connections per second with concurrent workers, and failures. */
export async function measureConns(tool: Tool, p: BenchPath, s: Settings): Promise<Outcome> {
  const cpu = (): number => p.forwarders.reduce((sum, f) => sum + treeCpuSeconds(f.pid), 0);
  const serviceCpu = (): number => (p.servicePid === undefined ? NaN : treeCpuSeconds(p.servicePid));
  const before = { forwarders: cpu(), service: serviceCpu() };
  const result = await conns(tool, p.port, s.connsWorkers, s.connsSeconds, p.prelude);
  await forwardersSettled(p);
  // Per connection, the cost that decides conns/s once the cores are shared: the
  // relayed service's (the library's) counts too, it runs on the same cores.
  const perConn = (seconds: number): number => (seconds / Math.max(1, result.ok)) * 1e6;
  const cpuPerConn = perConn(cpu() - before.forwarders);
  const servicePerConn = perConn(serviceCpu() - before.service);
  const problems = result.failed > 0 ? [`conns: ${result.failed} failed of ${result.ok + result.failed} (${JSON.stringify(result.errors)})`] : [];
  return {
    samples: [
      { path: p.name, figure: 'conns', value: result.ok / result.seconds },
      { path: p.name, figure: 'conns-failed', value: result.failed },
      ...(p.forwarders.length > 0 ? [{ path: p.name, figure: 'conns-cpu' as const, value: cpuPerConn }] : []),
      ...(p.servicePid !== undefined ? [{ path: p.name, figure: 'conns-cpu-service' as const, value: servicePerConn }] : []),
    ],
    problems,
  };
}

/**
 * Figure 7: bursty arrivals (what a prewarm pool is for): first echo over every
 * connection of every burst, and for a library service the share of its clients that
 * started on a prewarmed connection.
 */
export async function measureBurst(p: BenchPath, s: Settings): Promise<Outcome> {
  const before = await clientCounts(p);
  const script = path.join(ROOT, 'dist', 'scripts', 'bench', 'burst-client.js');
  const args = [script, String(p.port), String(s.bursts), String(s.burstSize), String(s.burstGapMs)];
  const result = await runJson<{ p50: number; p99: number; ok: number; failed: number; errors: Record<string, number> }>(
    'burst-client',
    process.execPath,
    args,
    30_000 + s.bursts * (s.burstGapMs + 5000),
    p.prelude === undefined ? {} : { BENCH_PRELUDE: p.prelude },
  );
  const after = await clientCounts(p);
  const samples: Sample[] = [{ path: p.name, figure: 'burst-echo', value: result.p50, p99: result.p99 }];
  if (before !== undefined && after !== undefined && after.clients > before.clients) {
    samples.push({ path: p.name, figure: 'burst-warm', value: (100 * (after.prewarmed - before.prewarmed)) / (after.clients - before.clients) });
  }
  const problems = result.failed > 0 ? [`burst: ${result.failed} of ${result.ok + result.failed} connections failed (${JSON.stringify(result.errors)})`] : [];
  return { samples, problems };
}
