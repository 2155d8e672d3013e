/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`) as the functions with the most
 * self time, and the share of inclusive time under each of our own source files, so
 * a profile of the relay can be read in a terminal and quoted in docs/benchmarks.md.
 *
 * Usage: node dist/scripts/profile-top.js FILE.cpuprofile [TOP=25]
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function main(): void {
  const [file, topText] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write('usage: profile-top FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  const top = Number(topText ?? 25);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  // Self time per node: each sample's time delta belongs to the node sampled.
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const label = (n: ProfileNode): string => {
    const { functionName, url, lineNumber } = n.callFrame;
    const where = url ? `${path.basename(url)}:${lineNumber + 1}` : '';
    return `${functionName || '(anonymous)'} ${where}`.trim();
  };
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const idle = [...selfUs].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, us]) => a + us, 0);
  const busy = total - idle;

  const bySelf = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    if (n.callFrame.functionName === '(idle)') continue;
    bySelf.set(label(n), (bySelf.get(label(n)) ?? 0) + us);
  }
  const pct = (us: number): string => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  process.stdout.write(`profile: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy (percentages of busy time)\n`);
  process.stdout.write(`\nself time, top ${top}:\n`);
  for (const [name, us] of [...bySelf].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(us)}  ${name}\n`);

  // Inclusive time per source file of ours: a sample counts once for each file on its stack.
  const byFile = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const files = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const url = byId.get(cur)!.callFrame.url;
      if (url.includes('/dist/src/') || url.startsWith('node:')) files.add(url.includes('/dist/src/') ? url.slice(url.indexOf('/dist/src/') + 10) : url);
    }
    for (const f of files) byFile.set(f, (byFile.get(f) ?? 0) + us);
  }
  process.stdout.write(`\ninclusive time by file (ours and node:*), top ${top}:\n`);
  for (const [name, us] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(us)}  ${name}\n`);
}

main();
