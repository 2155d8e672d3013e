import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dial, portsFlag, readAtLeast, eventually } from '../helpers/net.js';
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

/** SIGUSR2 to the master; resolves once the old worker has handed over and exited. */
async function upgrade(relay: RelayProcess): Promise<number> {
  const from = relay.stderr.length;
  relay.signal('SIGUSR2');
  const done = await relay.waitFor('stderr', /"worker":(\d+),"oldWorker":\d+,"msg":"upgrade: new worker serving/, 20_000, from);
  await relay.waitFor('stderr', /"msg":"old worker exited"/, 10_000, from);
  return Number(done[1]);
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
