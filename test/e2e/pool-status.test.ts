import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceView } from '../../src/monitor/overview.js';
import { getJson, relayCommand, relayWithDashboard } from '../helpers/dashboard.js';
import { eventually } from '../helpers/net.js';
import { NO_ENV_SECRET } from '../helpers/processes.js';
import { askPool, RawMember } from '../helpers/pool-member.js';
import { randomHex } from '../helpers/protocol.js';

test('pool: /api/services, /metrics, ./relay status and the access log show one address, its members and their states', async (t) => {
  const relay = await relayWithDashboard(t, ['--probe', '0.2'], NO_ENV_SECRET);
  const key = randomHex(32);
  const members = [];
  for (const name of ['m0', 'm1', 'm2']) members.push(await RawMember.join(t, relay.port, key, name));
  const port = members[0]!.publicPort;
  const { name } = await askPool(t, port, 'hi\n');
  members[1]!.send('DRAIN');
  members[2]!.send('HEALTH down');
  const pools = async (): Promise<ServiceView[]> => getJson<ServiceView[]>(relay.base, 'api/services');
  await eventually(async () => (await pools())[0]?.members?.map((m) => m.state).join() === 'ready,draining,unhealthy', 5000, 'the member states');
  const [view] = await pools();
  assert.equal((await pools()).length, 1, 'one address');
  assert.equal(view!.publicPort, port);
  assert.deepEqual(
    view!.members!.map((m) => m.peer),
    members.map((m) => `127.0.0.1:${m.control.localPort}`),
  );

  const metrics = await (await fetch(new URL('metrics', relay.base))).text();
  for (const state of ['ready', 'draining', 'unhealthy']) assert.match(metrics, new RegExp(`^relay_pool_members\\{port="${port}",state="${state}"\\} 1$`, 'm'));
  assert.match(metrics, /^relay_pool_retries_total 0$/m);

  const status = await relayCommand(['status', '--metrics', new URL(relay.base).host]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`^127\\.0\\.0\\.1:${port} .* pool of 3 +\\S`, 'm'));
  for (const [i, state] of ['ready', 'draining', 'unhealthy'].entries()) {
    assert.match(status.stdout, new RegExp(`^  member 127\\.0\\.0\\.1:${members[i]!.control.localPort} +0 +0 +${state} `, 'm'));
  }
  const served = members.find((m) => m.name === name)!;
  await relay.waitFor('stderr', new RegExp(`"member":"127\\.0\\.0\\.1:${served.control.localPort}".*"msg":"tunnel closed"`));
});
