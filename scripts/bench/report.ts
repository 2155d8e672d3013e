/**
 * What each figure means and how its repetitions combine, and the three ways the
 * results leave the bench: a table on stdout, a JSON file, a markdown table.
 * Ratios are always path / reference, whichever way is better; the table says
 * which way is better for each figure.
 */

export const FIGURES = {
  'tput-down': { label: 'bulk download, 1 stream', unit: 'Gbit/s', better: 'higher', combine: 'median' },
  'tput-up': { label: 'bulk upload, 1 stream', unit: 'Gbit/s', better: 'higher', combine: 'median' },
  'tput-down-x4': { label: 'bulk download, 4 streams', unit: 'Gbit/s', better: 'higher', combine: 'median' },
  'cpu-forwarders': { label: 'CPU per GiB, forwarder processes', unit: 's/GiB', better: 'lower', combine: 'median' },
  'cpu-relay': { label: 'CPU per GiB, relay process only', unit: 's/GiB', better: 'lower', combine: 'median' },
  'cpu-expose': { label: 'CPU per GiB, expose process only', unit: 's/GiB', better: 'lower', combine: 'median' },
  'cpu-total': { label: 'CPU per GiB, all processes (client+fwd+backend)', unit: 's/GiB', better: 'lower', combine: 'median' },
  'rtt-1': { label: 'ping-pong 1 B, open connection', unit: 'µs', better: 'lower', combine: 'median' },
  'rtt-1k': { label: 'ping-pong 1 KiB, open connection', unit: 'µs', better: 'lower', combine: 'median' },
  'first-echo': { label: 'connect() to first echoed byte', unit: 'µs', better: 'lower', combine: 'median' },
  conns: { label: 'short connections/s, 50 workers', unit: 'conn/s', better: 'higher', combine: 'median' },
  'conns-cpu': { label: 'forwarder CPU per short connection', unit: 'µs', better: 'lower', combine: 'median' },
  'conns-cpu-service': { label: 'Node service CPU per short connection (library; plain net.Server for node)', unit: 'µs', better: 'lower', combine: 'median' },
  'conns-failed': { label: 'short connections failed (all reps)', unit: 'count', better: 'lower', combine: 'sum' },
  'burst-echo': { label: 'connect() to first echoed byte, bursty arrivals', unit: 'µs', better: 'lower', combine: 'median' },
  'burst-warm': { label: 'bursty arrivals: clients started on a prewarmed connection', unit: '%', better: 'higher', combine: 'median' },
  'idle-open': { label: 'idle tunnels: time to open and echo all', unit: 's', better: 'lower', combine: 'median' },
  'idle-echoing': { label: 'idle tunnels echoing after hold (worst rep)', unit: 'tunnels', better: 'higher', combine: 'min' },
  'idle-mem-forwarders': { label: 'idle tunnels: forwarder memory per tunnel', unit: 'KiB', better: 'lower', combine: 'median' },
  'idle-mem-relay': { label: 'idle tunnels: relay memory per tunnel', unit: 'KiB', better: 'lower', combine: 'median' },
  'idle-mem-service': { label: 'idle tunnels: Node service memory per tunnel (library; plain net.Server for node)', unit: 'KiB', better: 'lower', combine: 'median' },
  'idle-rss-after': { label: 'forwarder RSS after close (settled) / before open (worst rep)', unit: '%', better: 'lower', combine: 'max' },
  'idle-rss-cycle2': { label: 'forwarder RSS after a 2nd open+close (settled) / before open (worst rep)', unit: '%', better: 'lower', combine: 'max' },
} as const satisfies Record<string, { label: string; unit: string; better: 'higher' | 'lower'; combine: 'median' | 'sum' | 'min' | 'max' }>;

export type FigureId = keyof typeof FIGURES;

/** One repetition's value of one figure on one path. */
export interface Sample {
  path: string;
  figure: FigureId;
  value: number;
  /** Latency figures: that repetition's 99th percentile. */
  p99?: number;
}

/** One row of the results: the contract of `--json`. */
export interface Measurement {
  path: string;
  figure: FigureId;
  label: string;
  reps: number;
  median: number;
  p99: number | null;
  unit: string;
  ratio_to_direct: number | null;
  ratio_to_haproxy: number | null;
  samples: number[];
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function combine(figure: FigureId, values: number[]): number {
  switch (FIGURES[figure].combine) {
    case 'sum':
      return values.reduce((a, b) => a + b, 0);
    case 'min':
      return Math.min(...values);
    case 'max':
      return Math.max(...values);
    case 'median':
      return median(values);
  }
}

/** Rows in figure order, then in the order paths were given. */
export function aggregate(samples: Sample[], pathOrder: readonly string[]): Measurement[] {
  const rows: Measurement[] = [];
  for (const figure of Object.keys(FIGURES) as FigureId[]) {
    const value = (path: string): number | undefined => {
      const values = samples.filter((s) => s.figure === figure && s.path === path && Number.isFinite(s.value)).map((s) => s.value);
      return values.length === 0 ? undefined : combine(figure, values);
    };
    const ratio = (own: number, ref: number | undefined): number | null => (ref === undefined || ref === 0 ? null : own / ref);
    const direct = value('direct');
    const haproxy = value('haproxy');
    for (const path of pathOrder) {
      const mine = samples.filter((s) => s.figure === figure && s.path === path && Number.isFinite(s.value));
      if (mine.length === 0) continue;
      const own = combine(
        figure,
        mine.map((s) => s.value),
      );
      const p99s = mine.flatMap((s) => (s.p99 === undefined ? [] : [s.p99]));
      rows.push({
        path,
        figure,
        label: FIGURES[figure].label,
        reps: mine.length,
        median: own,
        p99: p99s.length === 0 ? null : median(p99s),
        unit: FIGURES[figure].unit,
        ratio_to_direct: ratio(own, direct),
        ratio_to_haproxy: ratio(own, haproxy),
        samples: mine.map((s) => s.value),
      });
    }
  }
  return rows;
}

export function fmt(value: number | null): string {
  if (value === null || !Number.isFinite(value)) return '-';
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toString();
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value === 0 ? '0' : value.toPrecision(2);
}

const ratioText = (r: number | null): string => (r === null ? '-' : `${r.toFixed(2)}x`);
/** The spread of the repetitions, so a reader can tell a difference from noise. */
const rangeText = (r: Measurement): string => (r.samples.length < 2 ? '-' : `${fmt(Math.min(...r.samples))}..${fmt(Math.max(...r.samples))}`);

/** The table printed on stdout: one block per figure, one line per path. */
export function formatTable(rows: Measurement[]): string {
  const out: string[] = [];
  const header = ['path', 'median', 'p99', 'unit', 'vs direct', 'vs haproxy', 'reps', 'min..max'];
  const widths = [15, 10, 10, 8, 10, 10, 4, 16];
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' ');
  for (const figure of Object.keys(FIGURES) as FigureId[]) {
    const mine = rows.filter((r) => r.figure === figure);
    if (mine.length === 0) continue;
    out.push('', `${FIGURES[figure].label} (${FIGURES[figure].better} is better)`, line(header));
    for (const r of mine) {
      out.push(line([r.path, fmt(r.median), fmt(r.p99), r.unit, ratioText(r.ratio_to_direct), ratioText(r.ratio_to_haproxy), String(r.reps), rangeText(r)]));
    }
  }
  return out.join('\n');
}

export function formatMarkdown(rows: Measurement[]): string {
  const out = ['| figure | path | median | p99 | unit | vs direct | vs haproxy | reps | min..max |', '|---|---|--:|--:|---|--:|--:|--:|--:|'];
  let previous = '';
  for (const r of rows) {
    const figure = r.figure === previous ? '' : `${r.label} (${FIGURES[r.figure].better} is better)`;
    previous = r.figure;
    out.push(`| ${figure} | ${r.path} | ${fmt(r.median)} | ${fmt(r.p99)} | ${r.unit} | ${ratioText(r.ratio_to_direct)} | ${ratioText(r.ratio_to_haproxy)} | ${r.reps} | ${rangeText(r)} |`);
  }
  return out.join('\n') + '\n';
}
