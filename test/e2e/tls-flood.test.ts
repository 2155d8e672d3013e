import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dial, echoThrough, portsFlag, randomData, sha256, eventually } from '../helpers/net.js';
import { startRelay, startService } from '../helpers/processes.js';
import { Peer } from '../helpers/protocol.js';
import { openFiles } from '../helpers/observe.js';
import { requireTools } from '../helpers/tools.js';
import { certFiles } from '../helpers/tls.js';

/** The relay's cap on connections in their handshake (MAX_HANDSHAKES in src/relay/handshakes.ts). */
const MAX_HANDSHAKES = 4096;

test('TLS relay: 4500 silent connections that never start TLS are evicted like plain ones, and a TLS service still registers', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const { cert, key } = await certFiles(t);
  // Handshakes last 10 s here, so only the cap can free the flood's descriptors during the test.
  const relay = await startRelay(t, [...portsFlag(), '--tls-cert', cert, '--tls-key', key, '--handshake-timeout', '10']);
  const filesBefore = openFiles(relay.workerPid);

  // Under load some connects time out: open more until the flood is past the cap.
  const flood: Peer[] = [];
  for (let round = 0; round < 10 && flood.length < 4500; round++) {
    const opened = await Promise.allSettled(Array.from({ length: 4500 - flood.length }, () => Peer.open(t, relay.port)));
    flood.push(...opened.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : [])));
  }
  t.diagnostic(`${flood.length} flood connections accepted by the kernel`);
  assert.ok(flood.length > MAX_HANDSHAKES, 'the flood is larger than the cap');
  await relay.waitFor('stderr', /handshakes in progress/);
  const held = openFiles(relay.workerPid) - filesBefore;
  t.diagnostic(`relay holds ${held} more descriptors during the flood`);
  assert.ok(held <= MAX_HANDSHAKES + 50, `the relay holds ${held} descriptors for a flood capped at ${MAX_HANDSHAKES}`);
  await eventually(() => flood.filter((peer) => peer.socket.readableEnded || peer.socket.destroyed).length >= flood.length - MAX_HANDSHAKES, 10_000, 'evicted connections closed');

  const echo = await startService(t, 'echoserver', ['localhost', String(relay.port), '--ca', cert]);
  const client = await dial(t, echo.publicPort);
  const data = randomData(64 * 1024);
  assert.equal(sha256(await echoThrough(client, data, 8192, 10_000)), sha256(data), 'a TLS service registered during the flood echoes');

  for (const peer of flood) peer.socket.destroy();
  await eventually(() => openFiles(relay.workerPid) <= filesBefore + 10, 10_000, `relay open files back to ${filesBefore} (now ${openFiles(relay.workerPid)})`);
});
