import { test } from 'node:test';
import assert from 'node:assert/strict';
import { relayCommand, relayWithDashboard, getJson } from '../helpers/dashboard.js';
import { planFleet, startNode } from '../helpers/fleet.js';
import { eventually } from '../helpers/net.js';
import { requireTools } from '../helpers/tools.js';

test('relay status on a fleet node: its name, its peers and etcd reachable; once etcd is gone, unreachable with the last error', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t, 20);
  const nodes = await Promise.all([1, 2].map((n) => startNode(t, plan, n, ['--metrics', `127.0.0.${n}:0`, '--node', `node-${n}`])));
  await Promise.all(nodes.map((node) => node.waitFor('stderr', /"nodes":2,"msg":"fleet: nodes changed"/, 10_000)));
  const base = (await nodes[0]!.waitFor('stderr', /"dashboard":"(http:[^"]+)"/))[1]!;
  const { fleet } = await getJson(base);
  assert.deepEqual(fleet, { node: 'node-1', address: `127.0.0.1:${plan.port}`, peers: [`127.0.0.2:${plan.port}`], etcd: { reachable: true, lastError: null, lastErrorAt: null } });
  const metrics = new URL(base).host;
  const up = await relayCommand(['status', '--metrics', metrics]);
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stdout, new RegExp(`^fleet +node node-1 at 127\\.0\\.0\\.1:${plan.port}, 1 peer 127\\.0\\.0\\.2:${plan.port}; etcd reachable$`, 'm'));

  plan.etcd.signal('SIGKILL');
  await eventually(async () => (await getJson(base)).fleet?.etcd.reachable === false, 15_000, 'the node to see etcd unreachable');
  const down = (await getJson(base)).fleet!;
  assert.match(down.etcd.lastError ?? '', /ECONNREFUSED|did not answer|socket hang up/);
  assert.ok(down.etcd.lastErrorAt !== null && Math.abs(Date.now() - down.etcd.lastErrorAt) < 60_000);
  const status = await relayCommand(['status', '--metrics', metrics]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^fleet +node node-1 at \S+, 1 peer \S+; etcd UNREACHABLE: \d\d:\d\d:\d\d .+$/m);
});

test('relay status on a single relay: fleet is null in the API and no fleet line is printed', async (t) => {
  const relay = await relayWithDashboard(t);
  assert.equal((await getJson(relay.base)).fleet, null);
  const status = await relayCommand(['status', '--metrics', new URL(relay.base).host]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^relay +up /m);
  assert.doesNotMatch(status.stdout, /^fleet/m);
});
