/**
 * `npm run bench -- --wan`: the first byte and short connections over a delayed network
 * (network.ts). Five paths side by side, repetitions interleaved as on loopback (for rep:
 * for figure: for path, the order rotating each rep), the load generator on the client
 * host. Without root or iproute2 it prints one `skipped:` line and exits 0.
 */
import { writeFileSync } from 'node:fs';
import type { Options, WanSettings } from '../options.js';
import { buildBenchtool, type ConnsResult, type LatencyResult } from '../native.js';
import { treeCpuSeconds } from '../proc-stats.js';
import { runJson, stopProcess, type Proc } from '../procs.js';
import { ADDRESS, buildNetwork, JITTER_US, missingPrerequisite, ONE_WAY_DELAY_US, removeNamespaces, type Network } from './network.js';
import { echoserverPrewarmDefault, startEcho, startWanPath, stopWanPath, WAN_PATHS, type WanPath, type WanPathName } from './paths.js';
import { formatWanTable, summarise, type WanSample } from './report.js';

type Progress = (text: string) => void;

/** Every echo server on the service host is a plain echo: the generator expects the 'e' back. */
const PURE = { BENCHTOOL_PURE: '1' };

function first(net: Network, tool: string, p: WanPath, count: number, warmup: number, gapMs = 0): Promise<LatencyResult & { p90: number }> {
  const [command, args] = net.on('client', tool, ['first', ADDRESS.relayFront, String(p.port), String(count), String(warmup), String(gapMs)]);
  return runJson(`first echo ${p.name}`, command, args, 30_000 + (count + warmup) * (1000 + gapMs), PURE);
}

function conns(net: Network, tool: string, p: WanPath, s: WanSettings): Promise<ConnsResult> {
  const boundS = 60;
  const [command, args] = net.on('client', tool, ['conns', ADDRESS.relayFront, String(p.port), String(s.connsWorkers), String(boundS), String(s.connsCount)]);
  return runJson(`conns ${p.name}`, command, args, (boundS + 15) * 1000, PURE);
}

/** Fails until an echo comes back through the path (bounded): every process is ready. */
async function firstEchoThrough(net: Network, tool: string, p: WanPath, ms = 15_000): Promise<void> {
  let last: unknown;
  for (const deadline = Date.now() + ms; Date.now() < deadline;) {
    try {
      await first(net, tool, p, 1, 0);
      return;
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`no echo through ${p.name} within ${ms} ms: ${(last as Error | undefined)?.message ?? ''}`);
}

async function startAll(net: Network, tool: string, errors: string[]): Promise<WanPath[]> {
  const paths: WanPath[] = [];
  for (const name of WAN_PATHS) {
    try {
      const result = await startWanPath(name, net);
      if ('skipped' in result) {
        process.stdout.write(`skipped ${name}: ${result.skipped}\n`);
        continue;
      }
      try {
        await firstEchoThrough(net, tool, result);
      } catch (err) {
        await stopWanPath(result);
        throw err;
      }
      paths.push(result);
    } catch (err) {
      errors.push(`${name}: could not start: ${(err as Error).message}`);
    }
  }
  return paths;
}

async function measure(net: Network, tool: string, paths: WanPath[], options: Options, wan: WanSettings, progress: Progress): Promise<{ samples: WanSample[]; errors: string[] }> {
  const samples: WanSample[] = [];
  const errors: string[] = [];
  const take = async (label: string, p: WanPath, run: () => Promise<void>): Promise<void> => {
    progress(`${label} ${p.name}`);
    try {
      await run();
    } catch (err) {
      errors.push(`${p.name} ${label}: ${(err as Error).message}`);
    }
    const dead = p.procs.find((proc) => !proc.alive());
    if (dead !== undefined) errors.push(`${p.name}: ${dead.name} died during ${label}`);
  };
  for (let rep = 0; rep < options.reps; rep++) {
    const order = paths.map((_, i) => paths[(i + rep) % paths.length]!).filter((p) => p.procs.every((proc) => proc.alive()));
    const tag = `rep ${rep + 1}/${options.reps}`;
    for (const p of order) {
      await take(`${tag} first echo`, p, async () => {
        const r = await first(net, tool, p, wan.firstCount, wan.firstWarmup, wan.firstGapMs);
        samples.push({ path: p.name, figure: 'first-p50', value: r.p50 / 1000 }, { path: p.name, figure: 'first-p90', value: r.p90 / 1000 }, { path: p.name, figure: 'failed', value: r.failed ?? 0 });
      });
    }
    for (const p of order) {
      await take(`${tag} conns/s`, p, async () => {
        const r = await conns(net, tool, p, wan);
        samples.push({ path: p.name, figure: 'conns', value: r.ok / r.seconds }, { path: p.name, figure: 'failed', value: r.failed });
      });
    }
  }
  return { samples, errors };
}

/** Untimed: a few first echoes and one round of short connections per path (prewarm auto sizes its pool). */
async function warmup(net: Network, tool: string, paths: WanPath[], wan: WanSettings, progress: Progress): Promise<void> {
  for (const p of paths) {
    progress(`warm-up ${p.name}`);
    await first(net, tool, p, 3, 0);
    await conns(net, tool, p, { ...wan, connsCount: Math.min(wan.connsCount, 4 * wan.connsWorkers) });
  }
}

function header(net: Network, wan: WanSettings, reps: number): string[] {
  const link = net.kind === 'netem' ? 'veth pairs, tc netem on both ends of each' : "TUN devices and benchtool's userspace wire (this kernel has no sch_netem)";
  const prewarm = echoserverPrewarmDefault();
  return [
    `network:  client ${ADDRESS.client} — ${ADDRESS.relayFront} relay ${ADDRESS.relayBack} — ${ADDRESS.service} service; ${ONE_WAY_DELAY_US / 1000} ms ± ${JITTER_US / 1000} ms one way per link; ${link}`,
    `counts:   ${reps} reps; first echo ${wan.firstCount} sequential connections per rep (+${wan.firstWarmup} warm-up); short connections ${wan.connsCount} per rep, ${wan.connsWorkers} in flight`,
    `defaults: ./echoserver without --prewarm runs --prewarm ${prewarm}, so the relay's default settings are the row ${prewarm === 'auto' ? 'relay+auto' : prewarm === '0' ? 'relay' : '(neither)'}`,
  ];
}

/** The whole --wan run; its exit code. `intro`: the lines that open the report, once it can run. */
export async function runWan(options: Options, wan: WanSettings, progress: Progress, intro: string[]): Promise<number> {
  const why = missingPrerequisite();
  if (why !== undefined) {
    process.stdout.write(`skipped: the WAN bench ${why}\n`);
    return 0;
  }
  process.stdout.write(`${intro.join('\n')}\n`);
  const tool = buildBenchtool();
  let net: Network;
  try {
    net = await buildNetwork(tool);
  } catch (err) {
    removeNamespaces();
    process.stdout.write(`skipped: the WAN bench could not build its network: ${(err as Error).message}\n`);
    return 0;
  }
  const procs: Proc[] = net.wire === undefined ? [] : [net.wire];
  const errors: string[] = [];
  let paths: WanPath[] = [];
  let samples: WanSample[] = [];
  let wireCpu: number | undefined;
  try {
    process.stdout.write(`${header(net, wan, options.reps).join('\n')}\n`);
    procs.push(await startEcho(net, tool));
    paths = await startAll(net, tool, errors);
    if (options.warmup) await warmup(net, tool, paths, wan, progress);
    const result = await measure(net, tool, paths, options, wan, progress);
    samples = result.samples;
    errors.push(...result.errors);
  } finally {
    wireCpu = net.wire === undefined ? undefined : treeCpuSeconds(net.wire.pid);
    for (const p of paths) await stopWanPath(p);
    for (const proc of procs.reverse()) await stopProcess(proc);
    removeNamespaces();
  }
  const wire = net.wire?.stdout.find((line) => line.includes('"passed"'));
  if (wire !== undefined) process.stdout.write(`wire:     ${wire}, ${wireCpu?.toFixed(2) ?? '?'} CPU-seconds\n`);
  const rows = summarise(
    samples,
    paths.map((p) => p.name as WanPathName),
  );
  process.stdout.write(`${formatWanTable(rows, echoserverPrewarmDefault())}\n`);
  if (errors.length > 0) process.stdout.write(`\nmeasurements that could not be taken:\n${errors.map((e) => `  - ${e}`).join('\n')}\n`);
  if (options.json) writeFileSync(options.json, JSON.stringify(rows, null, 2) + '\n');
  if (options.md) writeFileSync(options.md, formatWanTable(rows, echoserverPrewarmDefault(), 'markdown') + '\n');
  return errors.length > 0 ? 1 : 0;
}
