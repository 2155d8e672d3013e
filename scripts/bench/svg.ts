/**
 * The chart of `--svg FILE`: for each figure, one bar per path showing its ratio to
 * direct, on a log2 axis centred on 1x so that "twice as slow" and "half as fast"
 * look the same size. Plain SVG text, no dependency.
 */
import { FIGURES, type Measurement } from './report.js';

const COLORS: Record<string, string> = {
  socat: '#7f7f7f',
  haproxy: '#1f77b4',
  'haproxy-default': '#17becf',
  node: '#8c564b',
  'haproxy+node': '#bcbd22',
  relay: '#d62728',
  'relay@baseline': '#e377c2',
  'relay+expose': '#ff7f0e',
  'relay+prewarm': '#9467bd',
  'relay+fleet': '#2ca02c',
};

const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Figures where "x times direct" says something (not counts, not forwarder-only costs). */
const CHARTED = ['tput-down', 'tput-up', 'tput-down-x4', 'cpu-total', 'rtt-1', 'rtt-1k', 'first-echo', 'conns', 'idle-open'] as const;

export function ratioChart(rows: Measurement[], title: string): string {
  const groups = CHARTED.map((figure) => ({
    figure,
    bars: rows.filter((r) => r.figure === figure && r.path !== 'direct' && r.ratio_to_direct !== null && r.ratio_to_direct > 0),
  })).filter((g) => g.bars.length > 0);
  const ratios = groups.flatMap((g) => g.bars.map((b) => b.ratio_to_direct!));
  const span = Math.max(1, Math.ceil(Math.max(0, ...ratios.map((r) => Math.abs(Math.log2(r))))));
  const [left, plot, barH, gap] = [300, 560, 14, 12];
  const centre = left + plot / 2;
  const x = (ratio: number): number => centre + (Math.log2(ratio) / span) * (plot / 2);
  const out: string[] = [];
  let y = 70;
  for (const group of groups) {
    const meta = FIGURES[group.figure];
    out.push(`<text x="8" y="${y + 11}" font-weight="bold">${escape(`${meta.label} (${meta.unit}, ${meta.better} is better)`)}</text>`);
    y += 18;
    for (const bar of group.bars) {
      const r = bar.ratio_to_direct!;
      const [x0, x1] = [Math.min(centre, x(r)), Math.max(centre, x(r))];
      out.push(`<text x="${left - 8}" y="${y + 11}" text-anchor="end">${escape(bar.path)}</text>`);
      out.push(`<rect x="${x0.toFixed(1)}" y="${y}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${barH}" fill="${COLORS[bar.path] ?? '#444'}"/>`);
      const labelX = r >= 1 ? x1 + 4 : x0 - 4;
      out.push(`<text x="${labelX.toFixed(1)}" y="${y + 11}" text-anchor="${r >= 1 ? 'start' : 'end'}">${r.toFixed(2)}x</text>`);
      y += barH + 3;
    }
    y += gap;
  }
  const height = y + 30;
  const axis: string[] = [];
  for (let e = -span; e <= span; e++) {
    const tx = x(2 ** e);
    axis.push(`<line x1="${tx.toFixed(1)}" y1="60" x2="${tx.toFixed(1)}" y2="${y}" stroke="${e === 0 ? '#000' : '#ddd'}"/>`);
    axis.push(`<text x="${tx.toFixed(1)}" y="${y + 16}" text-anchor="middle">${e >= 0 ? 2 ** e : `1/${2 ** -e}`}x</text>`);
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${left + plot + 80}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="8" y="20" font-size="15" font-weight="bold">${escape(title)}</text>`,
    `<text x="8" y="40">Ratio to direct (client straight to the backend), log scale; 1x = as good as no forwarder.</text>`,
    ...axis,
    ...out,
    `</svg>`,
    '',
  ].join('\n');
}
