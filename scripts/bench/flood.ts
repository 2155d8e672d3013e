/**
 * The connect-and-abort flood figure: one attacker address (127.0.0.1) opens and at
 * once resets connections to one service's public port at a high rate, while another
 * address (127.0.0.2) measures a second service's new-connection latency (connect, one
 * byte, its echo): without and with the flood, on a relay without limits and on one
 * with --max-connect-rate. A benchmark figure, never a timed test.
 */
import { connect } from 'node:net';
import path from 'node:path';
import { freePort, startRelayed } from './paths.js';
import { ROOT, sleep, startProcess, stopProcess, type Proc } from './procs.js';

export interface FloodSettings {
  seconds: number;
  /** Connections a second the attacker aims at. */
  rate: number;
}

/** How long each attacking connection stays before its reset (see flood-attacker.ts). */
export const FLOOD_HOLD_MS = 100;

/** The relay's per-address rate in the limited scenario (docs/operations.md recommends it). */
export const FLOOD_LIMIT = 100;

interface FloodRow {
  scenario: string;
  floodPerSecond: number;
  p50: number;
  p99: number;
  samples: number;
  /** Measured connections that failed (no echo within 5 s). */
  failed: number;
  dialbacks: number;
  refused: number;
}

const MEASURER = '127.0.0.2';
/** One measured connection every this often: 50 a second, well under the limit measured. */
const MEASURE_EVERY_MS = 20;

/** Connect from MEASURER, send one byte, wait for its echo: milliseconds, or NaN on failure. */
function newConnectionMs(port: number): Promise<number> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = connect({ port, host: '127.0.0.1', localAddress: MEASURER });
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.once('connect', () => socket.write('x'));
    socket.once('data', () => {
      resolve(performance.now() - started);
      socket.destroy();
    });
    socket.once('error', () => {});
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Number.NaN);
    });
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function metric(port: number, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}

/** One measuring phase on a running relay: latencies for s.seconds, with or without the flood. */
async function phase(name: string, s: FloodSettings, ports: { victim: number; other: number; metrics: number }, flood: boolean): Promise<FloodRow> {
  const before = { dialbacks: await metric(ports.metrics, DIALBACKS), refused: await metric(ports.metrics, REFUSED) };
  const attacker = flood
    ? startProcess('flood-attacker', process.execPath, [
        path.join(ROOT, 'dist', 'scripts', 'bench', 'flood-attacker.js'),
        String(ports.victim),
        String(s.rate),
        String(s.seconds),
        '127.0.0.1',
        String(FLOOD_HOLD_MS),
      ])
    : undefined;
  try {
    const latencies: number[] = [];
    const until = performance.now() + s.seconds * 1000;
    let failed = 0;
    for (let next = performance.now(); next < until; next += MEASURE_EVERY_MS) {
      await sleep(next - performance.now());
      const ms = await newConnectionMs(ports.other);
      if (Number.isNaN(ms)) failed++;
      else latencies.push(ms);
    }
    const report = attacker === undefined ? undefined : (JSON.parse((await attacker.waitLine(/^\{.*\}$/, 15_000))[0]) as { attempted: number; seconds: number });
    latencies.sort((a, b) => a - b);
    return {
      scenario: name,
      floodPerSecond: report === undefined ? 0 : report.attempted / report.seconds,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      samples: latencies.length,
      failed,
      dialbacks: (await metric(ports.metrics, DIALBACKS)) - before.dialbacks,
      refused: (await metric(ports.metrics, REFUSED)) - before.refused,
    };
  } finally {
    if (attacker !== undefined) await stopProcess(attacker);
  }
}

const DIALBACKS = /^relay_dialback_seconds_count (\d+)/m;
const REFUSED = /^relay_refusals_total\{reason="connect-rate"\} (\d+)/m;

/** A fresh relay with two echo services, and the given phases measured on it. */
async function onRelay(s: FloodSettings, relayFlags: string[], phases: [name: string, flood: boolean][]): Promise<FloodRow[]> {
  const metricsPort = await freePort();
  const echo = (relayPort: number): Proc => startProcess('echoserver', path.join(ROOT, 'echoserver'), ['127.0.0.1', String(relayPort), '--log-level', 'warn']);
  const { relay, relayPort, service: victim, port: victimPort } = await startRelayed(echo, ['--metrics', `127.0.0.1:${metricsPort}`, ...relayFlags]);
  const other = echo(relayPort);
  try {
    const otherPort = Number((await other.waitLine(/^established relay address: .+:(\d+)$/, 15_000))[1]);
    for (let i = 0; i < 20; i++) await newConnectionMs(otherPort); // warm-up
    const rows: FloodRow[] = [];
    for (const [name, flood] of phases) rows.push(await phase(name, s, { victim: victimPort, other: otherPort, metrics: metricsPort }, flood));
    return rows;
  } finally {
    await Promise.all([relay, victim, other].map((proc) => stopProcess(proc)));
  }
}

export async function measureFlood(s: FloodSettings, progress: (text: string) => void): Promise<FloodRow[]> {
  progress('flood: no limit');
  const rows = await onRelay(
    s,
    [],
    [
      ['no flood', false],
      ['flood, no limit', true],
    ],
  );
  progress(`flood: --max-connect-rate ${FLOOD_LIMIT}`);
  rows.push(
    ...(await onRelay(
      s,
      ['--max-connect-rate', String(FLOOD_LIMIT)],
      [
        [`no flood, --max-connect-rate ${FLOOD_LIMIT}`, false],
        [`flood, --max-connect-rate ${FLOOD_LIMIT}`, true],
      ],
    )),
  );
  return rows;
}

export function formatFlood(rows: FloodRow[], s: FloodSettings): string {
  const head = `connect-and-abort flood: ${s.seconds} s at up to ${s.rate}/s from 127.0.0.1 (each reset ${FLOOD_HOLD_MS} ms after connecting) on one service; new connections to another service from ${MEASURER}`;
  const lines = [head, 'scenario                             flood/s   p50 ms   p99 ms  samples  failed  dial-backs  refused'];
  for (const r of rows) {
    lines.push(
      `${r.scenario.padEnd(35)} ${r.floodPerSecond.toFixed(0).padStart(8)} ${r.p50.toFixed(2).padStart(8)} ${r.p99.toFixed(2).padStart(8)} ${String(r.samples).padStart(8)} ${String(r.failed).padStart(7)} ${String(r.dialbacks).padStart(11)} ${String(r.refused).padStart(8)}`,
    );
  }
  return lines.join('\n') + '\n';
}
