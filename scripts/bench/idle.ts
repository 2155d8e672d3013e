/**
 * Figure 6, concurrent idle tunnels: open N through the path in batches, check each
 * echoes, hold them, measure each process's memory, check again, close, and compare
 * the forwarders' RSS after the close with before the open (a leak shows there).
 * The bench gives this figure freshly started processes: a relay whose heap is full
 * of garbage from the connection figures would have GC hide or inflate the growth.
 */
import type { Outcome } from './figures.js';
import { Hold, type Tool } from './native.js';
import type { BenchPath } from './paths.js';
import { sleep, stopProcess } from './procs.js';
import { treeConnectionsTo, treeFdCount, treePssKiB, treeRssKiB } from './proc-stats.js';
import type { Sample } from './report.js';

export interface IdleSettings {
  tunnels: number;
  batch: number;
  /** How long the tunnels are held, idle, before memory is read. */
  holdMs: number;
  /**
   * After a close, the longest wait for the forwarders' RSS to come back within 10% of
   * before (V8's memory reducer gives memory back only after ~20 s of idleness).
   */
  settleMs: number;
}

const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

/** The forwarders' RSS once back within 10% of `before`, or at the deadline. */
async function settledRss(pids: number[], before: number, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const rss = sum(pids.map(treeRssKiB));
    if (rss <= before * 1.1 || Date.now() >= deadline) return rss;
    await sleep(500);
  }
}

/** Waits (bounded) until every process's descriptor count is back near its baseline. */
async function connectionsGone(pids: number[], baseline: number[], ms: number, parked: () => number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    // Connections the service keeps parked (prewarm, on by default) are one descriptor in
    // the relay and one in the service each; a burst grows the pool, which shrinks back
    // within a minute. They are not tunnels left open.
    const allowed = 4 + parked();
    if (pids.every((pid, i) => treeFdCount(pid) <= baseline[i]! + allowed)) return true;
    await sleep(100);
  }
  return false;
}

/** How many more connections the path's service parks at its relay now than when `parkedSince` was made. */
function parkedSince(p: BenchPath): () => number {
  if (p.servicePid === undefined || p.relayPort === undefined) return () => 0;
  const { servicePid, relayPort } = p;
  const before = treeConnectionsTo(servicePid, relayPort);
  return () => Math.max(0, treeConnectionsTo(servicePid, relayPort) - before);
}

/** Opens count tunnels, closes them, and waits (bounded) until the processes have let go. */
async function cycle(tool: Tool, p: BenchPath, count: number, s: IdleSettings, watched: number[], baselineFds: number[], parked: () => number): Promise<void> {
  const hold = new Hold(tool, p.port, count, Math.min(s.batch, count), 120 + count / 50);
  try {
    await hold.opened(60_000 + count * 20);
    await hold.close(30_000);
  } finally {
    await stopProcess(hold.proc);
  }
  await connectionsGone(watched, baselineFds, 20_000, parked);
}

export async function measureIdle(tool: Tool, p: BenchPath, s: IdleSettings): Promise<Outcome> {
  const forwarders = p.forwarders.map((f) => f.pid);
  const watched = [...new Set([...forwarders, ...(p.servicePid === undefined ? [] : [p.servicePid])])];
  const baselineFds = watched.map(treeFdCount);
  const parked = parkedSince(p);
  // A fresh process grows on first use (lazily compiled code, buffer pools): that
  // growth is neither per-tunnel cost nor a leak, so an untimed small cycle goes first.
  await cycle(tool, p, Math.min(s.tunnels, 500), s, watched, baselineFds, parked);
  const pss = (pid: number | undefined): number => (pid === undefined ? NaN : treePssKiB(pid));
  const before = { forwarders: sum(forwarders.map(treePssKiB)), relay: pss(p.relayPid), service: pss(p.servicePid), rss: sum(forwarders.map(treeRssKiB)) };

  const hold = new Hold(tool, p.port, s.tunnels, s.batch, Math.ceil(120 + s.tunnels / 50 + s.holdMs / 1000));
  const problems: string[] = [];
  const samples: Sample[] = [];
  try {
    const opened = await hold.opened(60_000 + s.tunnels * 20);
    await sleep(s.holdMs);
    const held = { forwarders: sum(forwarders.map(treePssKiB)), relay: pss(p.relayPid), service: pss(p.servicePid) };
    const checked = await hold.check(60_000);
    await hold.close(30_000);
    const echoing = Math.min(opened.echoed, checked.echoed);
    if (echoing < s.tunnels) {
      problems.push(
        `idle: ${echoing} of ${s.tunnels} tunnels echoed (opened ${opened.open}, refused ${opened.refused}, ` +
          `failed ${opened.failed}+${checked.failed}${opened.lastError ? `, last error ${opened.lastError}` : ''})`,
      );
    }
    const perTunnel = (delta: number): number => delta / Math.max(1, opened.open);
    samples.push({ path: p.name, figure: 'idle-open', value: opened.seconds }, { path: p.name, figure: 'idle-echoing', value: echoing });
    if (forwarders.length > 0) samples.push({ path: p.name, figure: 'idle-mem-forwarders', value: perTunnel(held.forwarders - before.forwarders) });
    if (p.relayPid !== undefined) samples.push({ path: p.name, figure: 'idle-mem-relay', value: perTunnel(held.relay - before.relay) });
    if (p.servicePid !== undefined) samples.push({ path: p.name, figure: 'idle-mem-service', value: perTunnel(held.service - before.service) });
  } finally {
    await stopProcess(hold.proc);
  }
  if (!(await connectionsGone(watched, baselineFds, 20_000, parked))) problems.push('idle: connections still open 20 s after the client closed them');
  if (forwarders.length === 0) return { samples, problems };
  const afterFirst = await settledRss(forwarders, before.rss, s.settleMs);
  samples.push({ path: p.name, figure: 'idle-rss-after', value: (afterFirst / before.rss) * 100 });
  // Retention (pools, a heap not yet shrunk) stays level; a leak grows again every cycle.
  await cycle(tool, p, s.tunnels, s, watched, baselineFds, parked);
  const afterSecond = await settledRss(forwarders, before.rss, s.settleMs);
  samples.push({ path: p.name, figure: 'idle-rss-cycle2', value: (afterSecond / before.rss) * 100 });
  return { samples, problems };
}
