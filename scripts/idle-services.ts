/**
 * What the default prewarm costs a relay per idle service: N services registered from
 * one library process, with `--prewarm 0` and with the default (`auto`), no client ever;
 * after they settle, the relay worker's PSS (smaps_rollup, as the bench's idle-tunnel
 * figure), open descriptors and parked connections (`/api/relay` warmIdle), against the
 * relay before any registered. Repeated, the settings interleaved; medians printed.
 *
 *   node dist/scripts/idle-services.js [N] [REPS]        (default 500 services, 3 reps)
 *   node dist/scripts/idle-services.js --serve HOST PORT N PREWARM    (the service side)
 */
import path from 'node:path';
import { listenViaRelay } from '../src/index.js';
import { freePort } from './bench/paths.js';
import { descendants, treeFdCount, treePssKiB } from './bench/proc-stats.js';
import { ROOT, installCleanup, sleep, startProcess, stopProcess } from './bench/procs.js';

const HOST = '127.0.0.1';
/** As the bench's idle tunnels: hold, then measure. */
const HOLD_MS = 3000;

async function serve(host: string, port: number, count: number, prewarm: number | 'auto'): Promise<void> {
  let registered = 0;
  for (let i = 0; i < count; i++) {
    const registration = listenViaRelay((socket) => socket.destroy(), { host, port, prewarm });
    registration.once('established', () => {
      if (++registered === count) process.stdout.write('all registered\n');
    });
  }
  await new Promise(() => {});
}

interface Figures {
  pssKiB: number;
  fds: number;
  warm: number;
}

async function relayFigures(metricsBase: string, workerPid: number): Promise<Figures> {
  const view = (await (await fetch(new URL('api/relay', metricsBase), { signal: AbortSignal.timeout(5000) })).json()) as { warmIdle: number };
  return { pssKiB: treePssKiB(workerPid), fds: treeFdCount(workerPid), warm: view.warmIdle };
}

async function once(count: number, prewarm: '0' | 'auto'): Promise<{ before: Figures; after: Figures; servicePssKiB: number }> {
  const control = await freePort(2);
  const ports = await freePort(count + 10);
  const relay = startProcess('relay', path.join(ROOT, 'relay'), [
    String(control),
    '--ports',
    `${ports}-${ports + count + 9}`,
    '--max-services',
    String(count + 10),
    '--metrics',
    `${HOST}:0`,
    '--log-level',
    'info',
  ]);
  try {
    let base: string | undefined;
    for (let waited = 0; base === undefined; waited += 50) {
      if (waited > 15_000 || !relay.alive()) throw new Error(`relay did not start: ${relay.stderr.slice(-5).join('\n')}`);
      base = relay.stderr.map((line) => /"dashboard":"(http:[^"]+)"/.exec(line)?.[1]).find((url) => url !== undefined);
      await sleep(50);
    }
    const [workerPid] = descendants(relay.pid);
    if (workerPid === undefined) throw new Error('no relay worker');
    await sleep(HOLD_MS);
    const before = await relayFigures(base, workerPid);
    const service = startProcess('services', process.execPath, [path.join(ROOT, 'dist/scripts/idle-services.js'), '--serve', HOST, String(control), String(count), prewarm]);
    try {
      await service.waitLine(/^all registered$/, 60_000);
      const want = prewarm === '0' ? 0 : count;
      for (let waited = 0; (await relayFigures(base, workerPid)).warm !== want; waited += 100) {
        if (waited > 30_000) throw new Error(`never ${want} parked connections`);
        await sleep(100);
      }
      await sleep(HOLD_MS);
      return { before, after: await relayFigures(base, workerPid), servicePssKiB: treePssKiB(service.pid) };
    } finally {
      await stopProcess(service);
    }
  } finally {
    await stopProcess(relay);
  }
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function main(argv: string[]): Promise<void> {
  if (argv[0] === '--serve') {
    const [host, port, count, prewarm] = argv.slice(1);
    return serve(host!, Number(port), Number(count), prewarm === 'auto' ? 'auto' : Number(prewarm));
  }
  installCleanup();
  const count = Number(argv[0] ?? 500);
  const reps = Number(argv[1] ?? 3);
  const results: Record<string, { relayKiB: number[]; fds: number[]; warm: number[]; serviceKiB: number[] }> = {};
  for (let rep = 0; rep < reps; rep++) {
    for (const prewarm of rep % 2 === 0 ? (['0', 'auto'] as const) : (['auto', '0'] as const)) {
      const { before, after, servicePssKiB } = await once(count, prewarm);
      const row = (results[prewarm] ??= { relayKiB: [], fds: [], warm: [], serviceKiB: [] });
      row.relayKiB.push((after.pssKiB - before.pssKiB) / count);
      row.fds.push((after.fds - before.fds) / count);
      row.warm.push(after.warm);
      row.serviceKiB.push(servicePssKiB / count);
      process.stderr.write(
        `rep ${rep + 1} prewarm ${prewarm}: relay +${((after.pssKiB - before.pssKiB) / count).toFixed(2)} KiB and +${((after.fds - before.fds) / count).toFixed(2)} fds a service, ${after.warm} parked\n`,
      );
    }
  }
  process.stdout.write(`${count} idle services, ${reps} reps, medians\n`);
  process.stdout.write('| prewarm | relay PSS per service (KiB) | relay fds per service | parked connections | service process PSS per service (KiB) |\n|---|---|---|---|---|\n');
  for (const [prewarm, row] of Object.entries(results)) {
    process.stdout.write(
      `| ${prewarm} | ${median(row.relayKiB).toFixed(2)} (${row.relayKiB.map((v) => v.toFixed(2)).join(', ')}) | ${median(row.fds).toFixed(2)} | ${median(row.warm)} | ${median(row.serviceKiB).toFixed(1)} |\n`,
    );
  }
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`idle-services: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
