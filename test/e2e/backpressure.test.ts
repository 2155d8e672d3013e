import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { deferred, dial, listenLocal, portsFlag, within } from '../helpers/net.js';
import { startRelay, startService } from '../helpers/processes.js';
import { isRunning, rssKiB } from '../helpers/observe.js';

const MiB = 1024 * 1024;
const TOTAL = 512 * MiB;
const CHUNK = 64 * 1024;
const PAUSE_MS = 10_000;
const SAMPLE_MS = 500;

/**
 * RSS bound at about twice what was measured (2 cores, Node 20, three runs): VmRSS
 * peaked during the pause at 64-69 MiB for the relay (baseline 60) and 68-73 MiB for
 * expose (baseline 59).
 *
 * How far the backend may get ahead is the kernel's business as much as ours: three TCP
 * connections lie between backend and client (backend-expose, expose-relay,
 * relay-client), each with a send and a receive buffer that Linux grows up to
 * tcp_wmem/tcp_rmem max. Measured 15-44 MiB. The bound is what those buffers can hold
 * plus 8 MiB for user space; without backpressure it would be all 512 MiB.
 */
const RSS_BOUND_KIB = 140 * 1024;
const AHEAD_BOUND = 3 * (kernelMax('tcp_rmem') + kernelMax('tcp_wmem')) + 8 * MiB;

function kernelMax(setting: 'tcp_rmem' | 'tcp_wmem'): number {
  const fields = readFileSync(`/proc/sys/net/ipv4/${setting}`, 'utf8').trim().split(/\s+/);
  return Number(fields[2]);
}

/** Chunk k of the stream: 32-bit little-endian word i holds the word's index in the whole stream. */
function patternChunk(k: number): Buffer {
  const words = new Uint32Array(CHUNK / 4);
  const first = (k * CHUNK) / 4;
  for (let i = 0; i < words.length; i++) words[i] = (first + i) >>> 0;
  return Buffer.from(words.buffer);
}

function mib(kib: number): string {
  return (kib / 1024).toFixed(1);
}

test('backpressure: a backend writing 512 MiB to a client that stops reading for 10 s is held back; relay and expose memory stays flat; every byte arrives in order', async (t) => {
  let written = 0;
  const sentHash = createHash('sha256');
  const backendDone = deferred<void>();
  const backend = await listenLocal(t, (socket: Socket) => {
    // As fast as it can, but only as fast as its own write() allows.
    const pump = (): void => {
      while (written < TOTAL) {
        const chunk = patternChunk(written / CHUNK);
        sentHash.update(chunk);
        written += chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
      backendDone.resolve();
    };
    pump();
  });
  const relay = await startRelay(t, portsFlag());
  const expose = await startService(t, 'expose', ['127.0.0.1', String(relay.port), `127.0.0.1:${backend.port}`]);
  const baseline = { relay: rssKiB(relay.workerPid), expose: rssKiB(expose.pid) };

  const client = await dial(t, expose.publicPort);
  const receivedHash = createHash('sha256');
  let received = 0;
  const firstMiB = deferred<void>();
  const head: Buffer[] = [];
  client.on('data', (chunk: Buffer) => {
    receivedHash.update(chunk);
    if (received < MiB) head.push(chunk);
    const before = received;
    received += chunk.length;
    if (before < MiB && received >= MiB) {
      client.pause();
      firstMiB.resolve();
    }
  });
  await within(firstMiB.promise, 10_000, 'the first MiB');
  const firstBytes = Buffer.concat(head).subarray(0, MiB);
  assert.ok(firstBytes.equals(Buffer.concat(Array.from({ length: MiB / CHUNK }, (_, k) => patternChunk(k)))), 'the first MiB is the start of the stream');

  // The client reads nothing for PAUSE_MS; the whole chain must hold the backend back.
  const samples: { relay: number; expose: number }[] = [];
  const pauseEnds = Date.now() + PAUSE_MS;
  while (Date.now() < pauseEnds) {
    // A fixed interval to sample memory at, over a pause of fixed length: nothing to wait for.
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
    assert.ok(isRunning(relay.workerPid) && isRunning(expose.pid), 'relay or expose died during the pause');
    samples.push({ relay: rssKiB(relay.workerPid), expose: rssKiB(expose.pid) });
  }
  const receivedDuringPause = received;
  const aheadAtPauseEnd = written - receivedDuringPause;
  const peak = { relay: Math.max(...samples.map((s) => s.relay)), expose: Math.max(...samples.map((s) => s.expose)) };

  const ended = once(client, 'end', { signal: AbortSignal.timeout(25_000) });
  const drainStarted = performance.now();
  client.resume();
  await ended;
  await within(backendDone.promise, 1000, 'the backend to finish writing');
  const drainMs = performance.now() - drainStarted;

  t.diagnostic(
    `VmRSS relay: baseline ${mib(baseline.relay)} MiB, peak during pause ${mib(peak.relay)} MiB; ` +
      `expose: baseline ${mib(baseline.expose)} MiB, peak ${mib(peak.expose)} MiB; ` +
      `backend ahead of the client at the end of the pause ${(aheadAtPauseEnd / MiB).toFixed(1)} MiB ` +
      `(client had ${(receivedDuringPause / MiB).toFixed(1)} MiB); drained ${TOTAL / MiB} MiB in ${Math.round(drainMs)} ms`,
  );
  assert.equal(received, TOTAL, 'every byte arrived');
  assert.equal(receivedHash.digest('hex'), sentHash.digest('hex'), 'the bytes arrived unchanged and in order');
  assert.ok(aheadAtPauseEnd < AHEAD_BOUND, `the backend got ${(aheadAtPauseEnd / MiB).toFixed(1)} MiB ahead of a client that was not reading`);
  assert.ok(peak.relay < RSS_BOUND_KIB, `relay VmRSS reached ${mib(peak.relay)} MiB while the client did not read`);
  assert.ok(peak.expose < RSS_BOUND_KIB, `expose VmRSS reached ${mib(peak.expose)} MiB while the client did not read`);
});
