/**
 * The bench's command line and its three presets. A preset sizes every figure so a
 * run fits its budget: --smoke (under a minute, CI: every path and figure once), --quick
 * (a few minutes), and the default full run. --wan has presets of its own.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Settings } from './figures.js';
import type { FloodSettings } from './flood.js';
import type { IdleSettings } from './idle.js';
import { PATH_NAMES, type PathName } from './paths.js';

export const FIGURE_GROUPS = ['throughput', 'cpu', 'rtt', 'first-echo', 'conns', 'burst', 'idle', 'flood'] as const;
export type FigureGroup = (typeof FIGURE_GROUPS)[number];

/** The WAN bench's sizes (scripts/bench/wan/run.ts). */
export interface WanSettings {
  firstCount: number;
  firstWarmup: number;
  /** Between two first-echo trials: each arrives on a quiet path, not right behind the last close. */
  firstGapMs: number;
  /** Short connections: this many in flight at once, connsCount in all. */
  connsWorkers: number;
  connsCount: number;
}

export interface Options {
  mode: 'smoke' | 'quick' | 'full';
  /** --wan: the namespaced network of scripts/bench/wan/ instead of loopback. */
  wan: WanSettings | undefined;
  reps: number;
  idleReps: number;
  paths: PathName[];
  figures: FigureGroup[];
  settings: Settings;
  idle: IdleSettings;
  flood: FloodSettings;
  prewarm: number;
  /** --baseline: another built checkout, measured as the relay@baseline path. */
  baseline: string | undefined;
  warmup: boolean;
  json: string | undefined;
  svg: string | undefined;
  md: string | undefined;
}

const MIB = 2 ** 20;

const PRESETS = {
  smoke: {
    reps: 1,
    idleReps: 1,
    warmup: false,
    settings: {
      tputBytes: 8 * MIB,
      tputBytesX4: 4 * MIB,
      rttCount: 200,
      rttWarmup: 20,
      firstCount: 20,
      firstWarmup: 5,
      connsWorkers: 50,
      connsSeconds: 0.5,
      bursts: 2,
      burstSize: 32,
      burstGapMs: 100,
    },
    idle: { tunnels: 50, batch: 25, holdMs: 200, settleMs: 200 },
    flood: { seconds: 1, rate: 1000 },
  },
  quick: {
    reps: 3,
    idleReps: 1,
    warmup: true,
    settings: {
      tputBytes: 256 * MIB,
      tputBytesX4: 128 * MIB,
      rttCount: 2000,
      rttWarmup: 200,
      firstCount: 200,
      firstWarmup: 20,
      connsWorkers: 50,
      connsSeconds: 1.5,
      bursts: 10,
      burstSize: 32,
      burstGapMs: 300,
    },
    idle: { tunnels: 2000, batch: 250, holdMs: 1000, settleMs: 5000 },
    flood: { seconds: 3, rate: 4000 },
  },
  full: {
    reps: 5,
    idleReps: 2,
    warmup: true,
    settings: {
      tputBytes: 1024 * MIB,
      tputBytesX4: 512 * MIB,
      rttCount: 10000,
      rttWarmup: 500,
      firstCount: 1000,
      firstWarmup: 50,
      connsWorkers: 50,
      connsSeconds: 4,
      bursts: 20,
      burstSize: 32,
      burstGapMs: 300,
    },
    idle: { tunnels: 5000, batch: 250, holdMs: 3000, settleMs: 25_000 },
    flood: { seconds: 5, rate: 4000 },
  },
} as const;

// Each WAN trial is ~100 ms of delays: the counts, not the CPU, set the run's length.
const WAN_PRESETS = {
  smoke: { reps: 1, wan: { firstCount: 5, firstWarmup: 1, firstGapMs: 100, connsWorkers: 10, connsCount: 40 } },
  quick: { reps: 3, wan: { firstCount: 40, firstWarmup: 5, firstGapMs: 100, connsWorkers: 50, connsCount: 500 } },
  full: { reps: 5, wan: { firstCount: 100, firstWarmup: 10, firstGapMs: 100, connsWorkers: 50, connsCount: 1000 } },
} as const;

export const USAGE = `usage: npm run bench -- [options]

Measures direct, socat, haproxy (one thread), haproxy-default (one thread per core),
node (a plain Node server: the floor of any Node process), haproxy+node (haproxy in
front of that Node server: the relay's path has a Node service too), relay, relay+expose,
relay+prewarm (--prewarm N), relay+auto (--prewarm auto), relay+tls (TLS to the
relay), relay+fleet (a one-node fleet on etcd) and relay+names (through a
--names-port, each connection routed by an HTTP Host header) on 127.0.0.1,
repetitions interleaved, and prints medians with ratios to direct and to haproxy.

  --wan               over a delayed network instead of loopback (root, iproute2):
                      client, relay and service hosts in network namespaces, 10 ms
                      one way per link; haproxy, relay (--prewarm 0 and auto), ssh -R
                      and socat; first echo and short connections/s. With --smoke,
                      --quick, --reps, --json, --md
  --smoke             under a minute, tiny counts (CI): every path and figure once
  --quick             a few minutes, fewer repetitions
  --reps N            repetitions of figures 1-5 (idle tunnels: at most the preset's)
  --only LIST         comma list of paths (${PATH_NAMES.join(', ')})
                      and/or figures (${FIGURE_GROUPS.join(', ')})
  --tunnels N         idle tunnels to hold (default 5000; --quick 2000)
  --baseline DIR      also measure DIR, another built checkout (say, the commit
                      before a change), as the path relay@baseline: before and
                      after in one run, interleaved like every other path
  --prewarm N         pool size of the relay+prewarm path (default 16)
  --json FILE         one object per measurement (path, figure, label, reps, median,
                      p99, unit, ratio_to_direct, ratio_to_haproxy, samples)
  --svg FILE          bar chart of the ratios to direct
  --md FILE           the results as a markdown table
`;

export class OptionsError extends Error {}

/** A built checkout to measure as relay@baseline: its launcher and its relayed backend. */
function baselineCheckout(dir: string | undefined): string | undefined {
  if (dir === undefined) return undefined;
  const root = path.resolve(dir);
  for (const file of ['relay', 'dist/scripts/relayed-backend.js']) {
    if (!existsSync(path.join(root, file))) throw new OptionsError(`--baseline ${dir}: no ${file} there (check out and build the commit to compare: npm ci && npm run build)`);
  }
  return root;
}

function whole(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new OptionsError(`${name} must be a whole number from ${min} to ${max}, got "${text}"`);
  return n;
}

export function parseOptions(argv: string[]): Options | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        smoke: { type: 'boolean' },
        wan: { type: 'boolean' },
        quick: { type: 'boolean' },
        reps: { type: 'string' },
        only: { type: 'string' },
        tunnels: { type: 'string' },
        prewarm: { type: 'string' },
        json: { type: 'string' },
        svg: { type: 'string' },
        md: { type: 'string' },
        baseline: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new OptionsError((err as Error).message);
  }
  if (values.help) return 'help';
  if (values.smoke && values.quick) throw new OptionsError('--smoke and --quick exclude each other');
  const mode = values.smoke ? 'smoke' : values.quick ? 'quick' : 'full';
  const preset = PRESETS[mode];
  if (values.wan) {
    for (const flag of ['only', 'tunnels', 'prewarm', 'baseline', 'svg'] as const) {
      if (values[flag] !== undefined) throw new OptionsError(`--${flag} does not apply to --wan (it measures its own five paths)`);
    }
  }
  const only = (values.only ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const name of only) {
    if (!(PATH_NAMES as readonly string[]).includes(name) && !(FIGURE_GROUPS as readonly string[]).includes(name)) {
      throw new OptionsError(`--only: unknown path or figure "${name}" (paths: ${PATH_NAMES.join(', ')}; figures: ${FIGURE_GROUPS.join(', ')})`);
    }
  }
  const paths = PATH_NAMES.filter((p) => only.includes(p));
  const figures = FIGURE_GROUPS.filter((f) => only.includes(f));
  const reps = whole('--reps', values.reps, 1, 100) ?? (values.wan ? WAN_PRESETS[mode].reps : preset.reps);
  const tunnels = whole('--tunnels', values.tunnels, 1, 9000) ?? preset.idle.tunnels;
  return {
    mode,
    wan: values.wan ? { ...WAN_PRESETS[mode].wan } : undefined,
    reps,
    idleReps: Math.min(reps, preset.idleReps),
    // relay@baseline is measured only beside another checkout, and then by default.
    paths: (paths.length > 0 ? paths : [...PATH_NAMES]).filter((p) => p !== 'relay@baseline' || values.baseline !== undefined),
    figures: figures.length > 0 ? figures : [...FIGURE_GROUPS],
    settings: { ...preset.settings },
    idle: { ...preset.idle, tunnels, batch: Math.min(preset.idle.batch, tunnels) },
    flood: { ...preset.flood },
    prewarm: whole('--prewarm', values.prewarm, 1, 64) ?? 16,
    baseline: baselineCheckout(values.baseline),
    warmup: preset.warmup,
    json: values.json,
    svg: values.svg,
    md: values.md,
  };
}
