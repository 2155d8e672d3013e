import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assertEchoes, assertNewClientEchoes } from '../helpers/echo.js';
import { dial, portsFlag, readAtLeast, readToEnd, eventually } from '../helpers/net.js';
import { Peer } from '../helpers/protocol.js';
import { NO_ENV_SECRET, startRelay, startService, type RelayProcess } from '../helpers/processes.js';

// What a SIGUSR2 upgrade hands from the old worker to the new one, seen from outside.

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-handover-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** One unlabelled sample of the relay's /metrics. */
async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (match === null) throw new Error(`no ${name} in /metrics`);
  return Number(match[1]);
}

/** SIGUSR2 to the master; resolves once the new worker serves (and, unless told not to wait, the old one has exited). */
async function upgrade(relay: RelayProcess, waitForOld = true): Promise<number> {
  const from = relay.stderr.length;
  relay.signal('SIGUSR2');
  const done = await relay.waitFor('stderr', /"worker":(\d+),"oldWorker":\d+,"msg":"upgrade: new worker serving/, 20_000, from);
  if (waitForOld) await relay.waitFor('stderr', /"msg":"old worker exited"/, 10_000, from);
  return Number(done[1]);
}

interface RelayFigures {
  startedAt: number;
  uptimeSeconds: number;
  workerStartedAt: number;
  tunnelsOpened: number;
  bytesFromClients: number;
  bytesToClients: number;
  refusals: Record<string, number>;
  dialback: { count: number };
}

async function relayView(metricsUrl: string): Promise<RelayFigures> {
  return (await (await fetch(metricsUrl.replace(/\/metrics$/, '/api/relay'))).json()) as RelayFigures;
}

test('upgrade: 10 clients held for a departed service, some of which sent bytes, are all handed to the new worker and served when the service is back', async (t) => {
  const resumeFile = path.join(tempDir(t), 'echo.key');
  const relay = await startRelay(t, [...portsFlag(), '--hold-timeout', '30', '--metrics', '127.0.0.1:0'], NO_ENV_SECRET);
  const metricsUrl = (await relay.waitFor('stderr', /"metrics":"(http:[^"]+)"/))[1]!;
  const first = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port), '--resume-file', resumeFile], NO_ENV_SECRET);
  const from = relay.stderr.length;
  first.signal('SIGKILL');
  await relay.waitFor('stderr', /"msg":"service left"/, 5000, from);

  const clients: { socket: Socket; before: string; after: string }[] = [];
  for (let i = 0; i < 10; i++) {
    const socket = await dial(t, first.publicPort);
    // Even ones speak first (their bytes wait in the kernel, or in the old worker); odd ones only after.
    const before = i % 2 === 0 ? `client ${i} before the upgrade\n` : '';
    if (before !== '') socket.write(before);
    clients.push({ socket, before, after: `client ${i} after the service is back\n` });
  }
  await eventually(async () => (await metric(metricsUrl, 'relay_clients_held')) === 10, 5000, 'the old worker to hold the 10 clients');
  await upgrade(relay);

  const second = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port), '--resume-file', resumeFile], NO_ENV_SECRET);
  assert.equal(second.publicPort, first.publicPort, 'the service is back on its port');
  await Promise.all(
    clients.map(async ({ socket, before, after }, i) => {
      socket.write(after);
      const echoed = await readAtLeast(socket, before.length + after.length, 10_000).catch((err: Error) => {
        throw new Error(`client ${i}: ${err.message}`);
      });
      assert.equal(echoed.toString(), before + after, `client ${i} gets back what it sent`);
    }),
  );
  assert.equal(relay.stderr.filter((line) => /"msg":"held client reset|handed-over client reset/.test(line)).length, 0, 'no held client was reset');
});

test("upgrade: uptime counts from the master's start, and the totals (bytes, tunnels, refusals, dial-backs) carry on, with what the old worker drains after the handover", async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--metrics', '127.0.0.1:0', '--drain-timeout', '30'], NO_ENV_SECRET);
  const metricsUrl = (await relay.waitFor('stderr', /"metrics":"(http:[^"]+)"/))[1]!;
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  await assertNewClientEchoes(t, echo.publicPort, 'x'.repeat(3000));
  const long = await dial(t, echo.publicPort);
  await assertEchoes(long, 'open across the upgrade\n');
  const stranger = await Peer.open(t, relay.port);
  stranger.send('GET / HTTP/1.1');
  await stranger.endsWithin(5000);
  await eventually(async () => (await relayView(metricsUrl)).bytesToClients >= 3024, 5000, 'the totals to count the bytes');
  const before = await relayView(metricsUrl);
  const startBefore = await metric(metricsUrl, 'process_start_time_seconds');
  const workerBefore = await metric(metricsUrl, 'relay_worker_start_time_seconds');

  await upgrade(relay, false);
  await echo.waitFor('stdout', /^established relay address:/, 10_000, 1);
  const after = await relayView(metricsUrl);
  assert.equal(after.startedAt, before.startedAt, "the relay's start is the master's, before and after");
  assert.ok(after.uptimeSeconds >= before.uptimeSeconds, 'uptime goes on');
  assert.ok(after.workerStartedAt > before.workerStartedAt, 'the worker is a new one');
  assert.equal(await metric(metricsUrl, 'process_start_time_seconds'), startBefore);
  assert.ok((await metric(metricsUrl, 'relay_worker_start_time_seconds')) > workerBefore);
  assert.ok(after.bytesFromClients >= before.bytesFromClients && after.bytesToClients >= before.bytesToClients, `bytes carry on: ${JSON.stringify([before, after])}`);
  assert.ok(after.tunnelsOpened >= before.tunnelsOpened, 'tunnels opened carry on');
  assert.ok(after.dialback.count >= before.dialback.count, 'the dial-back histogram carries on');
  assert.deepEqual(
    Object.keys(before.refusals).filter((reason) => (after.refusals[reason] ?? 0) < before.refusals[reason]!),
    [],
    'refusals carry on',
  );

  // The old worker still serves the long tunnel: what it moves now reaches the totals when it is done.
  const tail = 'y'.repeat(20_000);
  long.end(tail);
  assert.equal((await readToEnd(long)).length, tail.length);
  await relay.waitFor('stderr', /"msg":"old worker exited"/, 10_000);
  await eventually(async () => (await relayView(metricsUrl)).bytesFromClients >= before.bytesFromClients + tail.length, 5000, 'the drained bytes to reach the totals');
});
