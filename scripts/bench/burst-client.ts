/**
 * The bench's bursty arrival pattern (figure 7), run as its own process so its event
 * loop is nobody else's: after one uncounted burst, BURSTS times SIZE new connections at once, each timed from
 * before connect() until the first byte of `ex` is echoed, then GAP_MS of silence.
 * Prints one JSON line: p50 and p99 in µs over every connection, and failures.
 *
 * Usage: node dist/scripts/bench/burst-client.js PORT BURSTS SIZE GAP_MS
 * BENCH_PRELUDE: bytes each connection sends first (a names port routes by them), as benchtool does.
 */
import { connect } from 'node:net';

const HOST = '127.0.0.1';
const TIMEOUT_MS = 5000;
const PRELUDE = process.env['BENCH_PRELUDE'] ?? '';

function once(port: number): Promise<number | string> {
  return new Promise((resolve) => {
    const began = performance.now();
    const socket = connect({ host: HOST, port, noDelay: true });
    const timer = setTimeout(() => finish('timeout'), TIMEOUT_MS);
    function finish(result: number | string): void {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    }
    socket.once('connect', () => socket.write(PRELUDE + 'ex'));
    socket.once('data', () => finish((performance.now() - began) * 1000));
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code ?? 'error'));
    socket.once('end', () => finish('eof'));
  });
}

const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

async function main(): Promise<void> {
  const [port, bursts, size, gapMs] = process.argv.slice(2).map(Number);
  if (!port || !bursts || !size || gapMs === undefined || !Number.isFinite(gapMs)) {
    process.stdout.write(`${JSON.stringify({ error: 'usage: burst-client PORT BURSTS SIZE GAP_MS' })}\n`);
    process.exitCode = 2;
    return;
  }
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  // One burst first, not counted: this process's own JIT warm-up is not the path's latency.
  await Promise.all(Array.from({ length: size }, () => once(port)));
  await new Promise((resolve) => setTimeout(resolve, gapMs));
  for (let b = 0; b < bursts; b++) {
    const results = await Promise.all(Array.from({ length: size }, () => once(port)));
    for (const r of results) {
      if (typeof r === 'number') latencies.push(r);
      else errors[r] = (errors[r] ?? 0) + 1;
    }
    await new Promise((resolve) => setTimeout(resolve, gapMs));
  }
  latencies.sort((a, b) => a - b);
  const failed = Object.values(errors).reduce((a, b) => a + b, 0);
  process.stdout.write(`${JSON.stringify({ p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), ok: latencies.length, failed, errors })}\n`);
}

await main();
