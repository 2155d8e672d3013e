import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from '../helpers/net.js';
import { etcdKeys, planFleet, startFleet } from '../helpers/fleet.js';
import { askPool, RawMember } from '../helpers/pool-member.js';
import { randomHex } from '../helpers/protocol.js';
import { requireTools } from '../helpers/tools.js';

test('fleet: a pool on two nodes: each member registers with both, both nodes dispatch among their members, one port agreed in etcd', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t);
  const nodes = await startFleet(t, plan, 2);
  const key = randomHex(32);
  // Member by member, node by node, as the library does: the first registration claims the port in etcd, the rest join.
  const registrations: RawMember[] = [];
  for (const name of ['m0', 'm1', 'm2']) {
    for (const node of nodes) registrations.push(await RawMember.join(t, plan.port, key, name, { host: node.address, feat: 'leave,fleet,pool' }));
  }
  const ports = new Set(registrations.map((member) => member.publicPort));
  assert.equal(ports.size, 1, `one address on both nodes: ${[...ports].join(' ')}`);
  const [port] = ports;
  const keys = await etcdKeys(plan.etcd);
  assert.equal([...keys.keys()].filter((name) => name.startsWith('/tcp-relay/ports/')).length, 1, 'one port assigned in etcd');
  assert.ok(keys.has(`/tcp-relay/ports/${port}`));
  for (const node of nodes) {
    const names: string[] = [];
    for (let i = 0; i < 9; i++) {
      const { name, echoed } = await askPool(t, port!, `via ${node.address} ${i}\n`, 5000, node.address);
      assert.equal(echoed, `via ${node.address} ${i}\n`);
      names.push(name);
    }
    assert.deepEqual([...new Set(names)].sort(), ['m0', 'm1', 'm2'], `${node.address} dispatches among all three members: ${names.join(' ')}`);
  }
  // One member leaves one node: the other node still has it, and this node serves with the two left.
  const leaving = registrations.find((member) => member.name === 'm0' && member.control.remoteAddress === nodes[0]!.address)!;
  leaving.send('LEAVE');
  await eventually(() => leaving.control.readableEnded || leaving.control.destroyed, 5000, 'the relay to close the leaving registration');
  const after = [];
  for (let i = 0; i < 6; i++) after.push((await askPool(t, port!, 'x\n', 5000, nodes[0]!.address)).name);
  assert.deepEqual([...new Set(after)].sort(), ['m1', 'm2']);
  assert.ok((await askPool(t, port!, 'x\n', 5000, nodes[1]!.address)).name.length > 0, 'the port is still served on the other node');
});
