/**
 * `npm run bench`: measures, in one run on this machine, a client talking straight
 * to a backend (direct), through socat, through haproxy, through the relay alone
 * (relay), through the relay and ./expose (relay+expose), and through the relay with
 * a prewarmed pool (relay+prewarm, relay+auto) and with TLS to the relay (relay+tls),
 * these three for the connection figures only. Repetitions are
 * interleaved (for rep: for figure: for path, the path order rotating each rep) so
 * machine noise spreads over every path alike. Everything it starts it stops, by
 * process group, however it ends. `--wan` measures over a delayed network instead
 * (scripts/bench/wan/). See docs/benchmarks.md for the method.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { measureBulk, measureBurst, measureConns, measureFirstEcho, measureRtt, type Outcome, type Settings } from './bench/figures.js';
import { formatFlood, measureFlood } from './bench/flood.js';
import { measureIdle } from './bench/idle.js';
import { buildBenchtool, conns, firstEcho, startBackend, tput, type Tool } from './bench/native.js';
import { OptionsError, USAGE, parseOptions, type FigureGroup, type Options } from './bench/options.js';
import { CONNECTION_ONLY, deadProcess, findProgram, startPath, stopPath, type BenchPath } from './bench/paths.js';
import { ROOT, installCleanup, stopProcess } from './bench/procs.js';
import { cpuModel } from './bench/proc-stats.js';
import { aggregate, formatMarkdown, formatTable, type Sample } from './bench/report.js';
import { ratioChart } from './bench/svg.js';
import { runWan } from './bench/wan/run.js';

interface Step {
  name: string;
  /** The figure groups whose samples this step produces. */
  groups: FigureGroup[];
  appliesTo: (p: BenchPath) => boolean;
  run: (tool: Tool, p: BenchPath) => Promise<Outcome>;
}

/** Paths that take every figure; the others only the connection figures. */
const notPrewarm = (p: BenchPath): boolean => !CONNECTION_ONLY.includes(p.name);
const started = performance.now();
const progress = (text: string): void => {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${text}\n`);
};

function groupOf(figure: string): FigureGroup {
  if (figure.startsWith('tput')) return 'throughput';
  if (figure.startsWith('cpu')) return 'cpu';
  if (figure.startsWith('rtt')) return 'rtt';
  if (figure.startsWith('idle')) return 'idle';
  if (figure.startsWith('burst')) return 'burst';
  return figure.startsWith('conns') ? 'conns' : 'first-echo';
}

function steps(settings: Settings): Step[] {
  return [
    { name: 'bulk', groups: ['throughput', 'cpu'], appliesTo: notPrewarm, run: (tool, p) => measureBulk(tool, p, settings) },
    { name: 'ping-pong', groups: ['rtt'], appliesTo: notPrewarm, run: (tool, p) => measureRtt(tool, p, settings) },
    { name: 'first echo', groups: ['first-echo'], appliesTo: () => true, run: (tool, p) => measureFirstEcho(tool, p, settings) },
    { name: 'conns/s', groups: ['conns'], appliesTo: () => true, run: (tool, p) => measureConns(tool, p, settings) },
    { name: 'bursts', groups: ['burst'], appliesTo: () => true, run: (_tool, p) => measureBurst(p, settings) },
  ];
}

function readOutput(command: string, args: string[], cwd = ROOT): string | undefined {
  try {
    return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    return undefined;
  }
}

function describeMachine(baseline: string | undefined): string[] {
  const socat = findProgram('socat');
  const haproxy = findProgram('haproxy');
  const commit = readOutput('git', ['rev-parse', '--short', 'HEAD']);
  const dirty = readOutput('git', ['status', '--porcelain', '--', 'src']);
  return [
    `date:     ${new Date().toISOString()}`,
    `machine:  ${os.cpus().length} cores, ${cpuModel()}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${os.release()}`,
    `node:     ${process.version}`,
    `peers:    ${
      socat
        ? (readOutput(socat, ['-V'])
            ?.split('\n')
            .find((l) => l.includes('version')) ?? 'socat')
        : 'socat missing'
    }; ` + `${haproxy ? (readOutput(haproxy, ['-v'])?.split('\n')[0] ?? 'haproxy') : 'haproxy missing'}`,
    `relay:    commit ${commit ?? 'unknown'}${dirty ? ' + uncommitted changes in src/' : ''}`,
    ...(baseline === undefined ? [] : [`baseline: commit ${readOutput('git', ['rev-parse', '--short', 'HEAD'], baseline) ?? 'unknown'} (relay@baseline, from ${path.basename(baseline)})`]),
  ];
}

/** One untimed pass per path, so the relay's JIT and every cache are warm. */
async function warmup(tool: Tool, paths: BenchPath[]): Promise<void> {
  for (const p of paths) {
    progress(`warm-up ${p.name}`);
    if (notPrewarm(p)) await tput(tool, p.port, 'down', 64 * 2 ** 20, 1);
    await firstEcho(tool, p.port, 50, 0, p.prelude);
    await conns(tool, p.port, 50, 0.5, p.prelude);
  }
}

/** Starts every selected path; one that fails to start is reported, the others still run. */
async function startPaths(options: Options, backend: Awaited<ReturnType<typeof startBackend>>, errors: string[]): Promise<BenchPath[]> {
  const paths: BenchPath[] = [];
  // The flood figure starts its own relays.
  if (options.figures.every((f) => f === 'flood')) return paths;
  for (const name of options.paths) {
    const usesPath = !CONNECTION_ONLY.includes(name) || options.figures.some((f) => f === 'first-echo' || f === 'conns' || f === 'burst');
    if (!usesPath) continue;
    try {
      const result = await startPath(name, { backend, prewarm: options.prewarm, baseline: options.baseline });
      if ('skipped' in result) process.stdout.write(`skipped ${name}: ${result.skipped}\n`);
      else paths.push(result);
    } catch (err) {
      errors.push(`${name}: could not start: ${(err as Error).message}`);
      process.stderr.write(`bench: ${name} could not start; measuring the other paths\n`);
    }
  }
  return paths;
}

type Backend = Awaited<ReturnType<typeof startBackend>>;

async function measureAll(tool: Tool, paths: BenchPath[], options: Options, backend: Backend): Promise<{ samples: Sample[]; problems: string[]; errors: string[] }> {
  const samples: Sample[] = [];
  const problems: string[] = [];
  const errors: string[] = [];
  const dead = new Set<BenchPath>();
  const runOne = async (label: string, p: BenchPath, run: () => Promise<Outcome>): Promise<void> => {
    if (dead.has(p)) return;
    progress(`${label} ${p.name}`);
    try {
      const outcome = await run();
      samples.push(...outcome.samples.filter((s) => options.figures.includes(groupOf(s.figure))));
      problems.push(...outcome.problems.map((text) => `${p.name}: ${text}`));
    } catch (err) {
      errors.push(`${p.name} ${label}: ${(err as Error).message}`);
    }
    const gone = deadProcess(p);
    if (gone !== undefined) {
      errors.push(`${p.name}: ${gone} died during ${label}; its later figures are missing`);
      dead.add(p);
    }
  };
  const plan = steps(options.settings).filter((step) => step.groups.some((g) => options.figures.includes(g)));
  for (let rep = 0; rep < options.reps; rep++) {
    const order = paths.map((_, i) => paths[(i + rep) % paths.length]!);
    for (const step of plan) {
      for (const p of order.filter(step.appliesTo)) await runOne(`rep ${rep + 1}/${options.reps} ${step.name}`, p, () => step.run(tool, p));
    }
  }
  if (!options.figures.includes('idle')) return { samples, problems, errors };
  // Figure 6 gets fresh processes (see idle.ts); the ones above are done.
  const names = paths.filter(notPrewarm).map((p) => p.name);
  for (const p of paths.splice(0)) await stopPath(p);
  for (let rep = 0; rep < options.idleReps; rep++) {
    for (const name of names) {
      const label = `idle rep ${rep + 1}/${options.idleReps} (${options.idle.tunnels} tunnels)`;
      let fresh;
      try {
        fresh = await startPath(name, { backend, prewarm: options.prewarm, baseline: options.baseline });
      } catch (err) {
        errors.push(`${name} ${label}: could not start: ${(err as Error).message}`);
        continue;
      }
      if ('skipped' in fresh) continue;
      paths.push(fresh);
      await runOne(label, fresh, () => measureIdle(tool, fresh, options.idle));
      await stopPath(fresh);
      paths.splice(paths.indexOf(fresh), 1);
    }
  }
  return { samples, problems, errors };
}

async function main(): Promise<number> {
  installCleanup();
  let options: Options | 'help';
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof OptionsError)) throw err;
    process.stderr.write(`bench: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const machine = describeMachine(options.baseline);
  if (options.wan) {
    const code = await runWan(options, options.wan, progress, [`tcp-relay benchmark (wan, ${options.mode}, ${options.reps} reps)`, ...machine]);
    progress(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
    return code;
  }
  process.stdout.write(`tcp-relay benchmark (${options.mode}, ${options.reps} reps)\n${machine.join('\n')}\n`);
  const tool = { binary: buildBenchtool() };
  const backend = await startBackend(tool);
  const startErrors: string[] = [];
  const paths = await startPaths(options, backend, startErrors);
  const pathOrder = paths.map((p) => p.name);
  let result;
  try {
    if (options.warmup) await warmup(tool, paths);
    result = await measureAll(tool, paths, options, backend);
    result.errors.unshift(...startErrors);
  } finally {
    // Whatever is still running (measureAll keeps `paths` current), however we got here.
    for (const p of paths) await stopPath(p);
    await stopProcess(backend.proc);
  }
  const rows = aggregate(result.samples, pathOrder);
  if (rows.length > 0) process.stdout.write(`${formatTable(rows)}\n`);
  if (options.figures.includes('flood')) {
    try {
      process.stdout.write(`\n${formatFlood(await measureFlood(options.flood, progress), options.flood)}`);
    } catch (err) {
      result.errors.push(`flood: ${(err as Error).message}`);
    }
  }
  for (const [title, list] of [
    ['failures seen (measured and reported above)', result.problems],
    ['measurements that could not be taken', result.errors],
  ] as const) {
    if (list.length > 0) process.stdout.write(`\n${title}:\n${list.map((l) => `  - ${l}`).join('\n')}\n`);
  }
  if (options.json) writeFileSync(options.json, JSON.stringify(rows, null, 2) + '\n');
  if (options.md) writeFileSync(options.md, formatMarkdown(rows));
  if (options.svg) writeFileSync(options.svg, ratioChart(rows, `tcp-relay bench, ${machine[0]!.slice(10, 20)}, ${os.cpus().length} cores, ${cpuModel()}`));
  progress(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  return result.errors.length > 0 ? 1 : 0;
}

process.exitCode = await main();
