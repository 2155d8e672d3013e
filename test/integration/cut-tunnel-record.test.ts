import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Relay } from '../../src/index.js';
import { assertEchoes } from '../helpers/echo.js';
import { dial, eventually, howItEnds } from '../helpers/net.js';
import { inProcessRelay, relayed } from '../helpers/relay.js';

// A tunnel the relay cuts ends in a reset to both peers; its access-log line (and the
// dashboard's record, the same object) must say so: closedBy relay, outcome destroyed.

/** An echo target whose sockets are reset-tolerant and closed by the test's cleanup. */
function echo(t: TestContext): (socket: Socket) => void {
  return (socket) => {
    socket.on('error', () => {});
    t.after(() => socket.destroy());
    socket.pipe(socket);
  };
}

/** A tunnel open through the relay, with bytes moved both ways. */
async function openTunnel(t: TestContext, relay: Relay, options: { tenant?: string; secret?: string } = {}): Promise<Socket> {
  const { port } = await relayed(t, relay, echo(t), options);
  const client = await dial(t, port);
  await assertEchoes(client, 'open\n');
  return client;
}

async function assertCutRecorded(relay: Relay, client: Socket, cut: () => unknown): Promise<void> {
  const ending = howItEnds(client);
  void cut();
  assert.equal(await ending, 'reset', 'the client gets a reset');
  await eventually(() => relay.overview.recentTunnels().length === 1, 5000, 'the tunnel to have its record');
  const [record] = relay.overview.recentTunnels();
  assert.deepEqual({ closedBy: record!.closedBy, outcome: record!.outcome, bytesToClient: record!.bytesToClient }, { closedBy: 'relay', outcome: 'destroyed', bytesToClient: 5 });
}

test('cut at the end of the drain: the tunnel is logged closedBy relay, outcome destroyed', async (t) => {
  const relay = await inProcessRelay(t);
  const client = await openTunnel(t, relay);
  await assertCutRecorded(relay, client, () => relay.shutdown(100));
});

test('cut at once (a second signal): the tunnel is logged closedBy relay, outcome destroyed', async (t) => {
  const relay = await inProcessRelay(t);
  const client = await openTunnel(t, relay);
  await assertCutRecorded(relay, client, () => relay.cutTunnels());
});

test('cut because its tenant was removed (SIGHUP): the tunnel is logged closedBy relay, outcome destroyed', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-cut-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tenantsFile = path.join(dir, 'tenants.json');
  const write = (names: string[]): void => writeFileSync(tenantsFile, JSON.stringify({ tenants: names.map((name) => ({ name, secrets: [`${name}-secret`] })) }), { mode: 0o600 });
  write(['alice', 'bob']);
  const relay = await inProcessRelay(t, { tenantsFile });
  const client = await openTunnel(t, relay, { tenant: 'bob', secret: 'bob-secret' });
  write(['alice']);
  await assertCutRecorded(relay, client, () => relay.reloadTenants());
});

test('a tunnel its client ends is still logged closedBy client, outcome end', async (t) => {
  const relay = await inProcessRelay(t);
  const client = await openTunnel(t, relay);
  client.end();
  await eventually(() => relay.overview.recentTunnels().length === 1, 5000, 'the tunnel to have its record');
  const [record] = relay.overview.recentTunnels();
  assert.deepEqual({ closedBy: record!.closedBy, outcome: record!.outcome }, { closedBy: 'client', outcome: 'end' });
});
