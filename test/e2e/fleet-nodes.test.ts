import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { eventually, freePort } from '../helpers/net.js';
import { everyNodeServes, planFleet, service, startNode, type FleetNode } from '../helpers/fleet.js';
import { Peer } from '../helpers/protocol.js';
import { NO_ENV_SECRET, ROOT, start, withWorkers } from '../helpers/processes.js';
import { requireTools } from '../helpers/tools.js';

// How fleet nodes name themselves and learn of each other.

test('fleet: a node on ::1 is named [::1]:PORT, and its log line names it once', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t, 20);
  const port = await freePort();
  const args = [String(port), '--bind', '::1', '--ports', `${plan.range.first}-${plan.range.last}`, '--public-host', 'relay.test', '--etcd', plan.etcd.url, '--log-format', 'json'];
  const node = start(t, path.join(ROOT, 'relay'), withWorkers(args), NO_ENV_SECRET);
  const [line] = await node.waitFor('stderr', /^.*"msg":"fleet: node registered in etcd".*$/m, 20_000);
  const name = `[::1]:${port}`;
  assert.equal(line!.match(/"node":/g)?.length, 1, `one "node" key: ${line}`);
  assert.equal((JSON.parse(line!) as { node: string }).node, name);
  assert.match(line!, new RegExp(`"address":"${name.replace(/[[\]]/g, '\\$&')}"`));
});

test('fleet: a service that registered when the fleet had one node is registered with all three once the others join, without registering again', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t, 20);
  const first = await startNode(t, plan, 1);
  const { tunnel, port } = await service(t, plan, '127.0.0.1');
  let announced = 0;
  tunnel.on('established', () => announced++);
  const later = await Promise.all([2, 3].map((n) => startNode(t, plan, n)));
  const nodes = [first, ...later];
  await eventually(
    async () =>
      everyNodeServes(nodes, port).then(
        () => true,
        () => false,
      ),
    15_000,
    `public port ${port} served by every node`,
  );
  const registered = (node: FleetNode): number => node.stderr.filter((line) => line.includes('"msg":"service registered"')).length;
  assert.deepEqual(nodes.map(registered), [1, 1, 1], 'one registration with each node; the first one never repeated');
  assert.equal(announced, 0, 'the same public address, not announced again');
});

test('fleet: NODES goes only to a service that listed fleet and nodes; an older service that listed fleet gets no line it does not know', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t, 20);
  const first = await startNode(t, plan, 1);
  const register = async (...feat: string[]): Promise<Peer> => {
    const control = await Peer.open(t, plan.port, { autoPong: true, host: first.address });
    control.send(['HELLO 1 host=relay.test', ...feat].join(' '));
    assert.match(await control.nextLine(10_000), /^OK /);
    return control;
  };
  const current = await register('feat=fleet,nodes');
  const older = await register('feat=rejoin,leave,superseded,fleet');
  const plain = await register();
  await startNode(t, plan, 2);
  assert.equal(await current.nextLine(15_000), `NODES 127.0.0.1:${plan.port},127.0.0.2:${plan.port}`);
  // The relay wrote NODES to every session in one turn: a PONG asked for now comes after any line sent then.
  for (const peer of [older, plain]) {
    peer.send('PING');
    assert.equal(await peer.nextLine(), 'PONG', 'nothing but the PONG');
  }
});
