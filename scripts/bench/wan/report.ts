/**
 * The WAN bench's results: medians over repetitions, ratios to haproxy (the physical
 * limit of a relay path) and, for the relay rows, to ssh -R, and the two targets
 * checked against the row that runs the relay's default settings.
 */
import { median } from '../report.js';
import { WAN_LABELS, type WanPathName } from './paths.js';

export interface WanSample {
  path: WanPathName;
  figure: 'first-p50' | 'first-p90' | 'conns' | 'failed';
  value: number;
}

/** One row: the contract of `--wan --json`. Times in ms; ratios are path / reference. */
export interface WanRow {
  path: WanPathName;
  label: string;
  reps: number;
  first_echo_p50_ms: number;
  /** The spread of the per-rep p50s: a ratio that differs by less is a tie. */
  first_echo_p50_range: [number, number];
  first_echo_p90_ms: number;
  conns_per_s: number;
  conns_range: [number, number];
  failed: number;
  first_echo_to_haproxy: number | null;
  conns_to_haproxy: number | null;
  first_echo_to_ssh: number | null;
  conns_to_ssh: number | null;
}

const range = (values: number[]): [number, number] => (values.length === 0 ? [NaN, NaN] : [Math.min(...values), Math.max(...values)]);

export function summarise(samples: WanSample[], order: WanPathName[]): WanRow[] {
  const values = (path: WanPathName, figure: WanSample['figure']): number[] => samples.filter((s) => s.path === path && s.figure === figure).map((s) => s.value);
  const rows = order
    .filter((path) => values(path, 'first-p50').length > 0 || values(path, 'conns').length > 0)
    .map((path) => ({
      path,
      label: WAN_LABELS[path],
      reps: Math.max(values(path, 'first-p50').length, values(path, 'conns').length),
      first_echo_p50_ms: median(values(path, 'first-p50')),
      first_echo_p50_range: range(values(path, 'first-p50')),
      first_echo_p90_ms: median(values(path, 'first-p90')),
      conns_per_s: median(values(path, 'conns')),
      conns_range: range(values(path, 'conns')),
      failed: values(path, 'failed').reduce((a, b) => a + b, 0),
    }));
  const ref = (name: WanPathName) => rows.find((r) => r.path === name);
  const ratio = (a: number, b: number | undefined): number | null => (b === undefined || !(b > 0) || Number.isNaN(a) ? null : a / b);
  const haproxy = ref('haproxy');
  const ssh = ref('ssh -R');
  return rows.map((r) => {
    const relay = r.path === 'relay' || r.path === 'relay+auto';
    return {
      ...r,
      first_echo_to_haproxy: ratio(r.first_echo_p50_ms, haproxy?.first_echo_p50_ms),
      conns_to_haproxy: ratio(r.conns_per_s, haproxy?.conns_per_s),
      first_echo_to_ssh: relay ? ratio(r.first_echo_p50_ms, ssh?.first_echo_p50_ms) : null,
      conns_to_ssh: relay ? ratio(r.conns_per_s, ssh?.conns_per_s) : null,
    };
  });
}

const fixed = (v: number | null, digits: number): string => (v === null || Number.isNaN(v) ? '–' : v.toFixed(digits));

const COLUMNS = ['path', 'first echo p50 ms', 'min..max', 'p90 ms', '×haproxy', '×ssh -R', 'conns/s', 'min..max', '×haproxy', '×ssh -R', 'failed'];

function cells(r: WanRow): string[] {
  return [
    r.path,
    fixed(r.first_echo_p50_ms, 1),
    `${fixed(r.first_echo_p50_range[0], 1)}..${fixed(r.first_echo_p50_range[1], 1)}`,
    fixed(r.first_echo_p90_ms, 1),
    fixed(r.first_echo_to_haproxy, 2),
    fixed(r.first_echo_to_ssh, 2),
    fixed(r.conns_per_s, 0),
    `${fixed(r.conns_range[0], 0)}..${fixed(r.conns_range[1], 0)}`,
    fixed(r.conns_to_haproxy, 2),
    fixed(r.conns_to_ssh, 2),
    String(r.failed),
  ];
}

/** The targets for the row with the default settings; time ratios, so conns/s is inverted. */
function targets(rows: WanRow[], prewarmDefault: string): string[] {
  const name: WanPathName | undefined = prewarmDefault === 'auto' ? 'relay+auto' : prewarmDefault === '0' ? 'relay' : undefined;
  const row = rows.find((r) => r.path === name);
  if (row === undefined) return [`targets: no row runs the default settings (--prewarm ${prewarmDefault})`];
  const check = (what: string, value: number | null, limit: number): string =>
    value === null ? `  ${what}: not measured` : `  ${what}: ${value.toFixed(2)}× (target ≤ ${limit}×: ${value <= limit ? 'met' : 'NOT met'})`;
  const inverse = (v: number | null): number | null => (v === null || v === 0 ? null : 1 / v);
  return [
    `targets, default settings (${row.path}), time ratios (for conns/s: the other path's conns/s over this one's):`,
    check('first echo / haproxy', row.first_echo_to_haproxy, 1.1),
    check('time per short connection / haproxy', inverse(row.conns_to_haproxy), 1.1),
    check('first echo / ssh -R', row.first_echo_to_ssh, 0.6),
    check('time per short connection / ssh -R', inverse(row.conns_to_ssh), 0.6),
  ];
}

export function formatWanTable(rows: WanRow[], prewarmDefault: string, format: 'text' | 'markdown' = 'text'): string {
  const body = rows.map(cells);
  const legend = rows.map((r) => `  ${r.path}: ${r.label}`);
  if (format === 'markdown') {
    const line = (c: string[]): string => `| ${c.join(' | ')} |`;
    return [line(COLUMNS), line(COLUMNS.map((_, i) => (i === 0 ? '---' : '---:'))), ...body.map(line)].join('\n');
  }
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...body.map((b) => b[i]!.length)));
  const line = (c: string[]): string => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ');
  return ['', line(COLUMNS), ...body.map(line), '', ...legend, '', ...targets(rows, prewarmDefault)].join('\n');
}
