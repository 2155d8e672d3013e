import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { eventually, within } from '../helpers/net.js';
import { etcdKeys, etcdWipe, planFleet, startNode, type FleetNode, type FleetPlan } from '../helpers/fleet.js';
import { nextConnect, parseOk, Peer, randomHex } from '../helpers/protocol.js';
import { requireTools } from '../helpers/tools.js';

// A fleet whose etcd loses its data while services are registered: the nodes write
// their live assignments back, and a port given away meanwhile goes back to the
// older registration.

/** A raw registration with node `node` only (no feat=fleet, so it learns of no other node). */
async function register(t: TestContext, plan: FleetPlan, node: FleetNode, options: string): Promise<{ control: Peer; port: number }> {
  const control = await Peer.open(t, plan.port, { autoPong: true, host: node.address });
  control.send(`HELLO 1 host=relay.test ${options}`);
  return { control, port: parseOk(await control.nextLine(10_000)).publicPort };
}

const hashOf = (resume: string): string => createHash('sha256').update(resume).digest('hex');

async function assignedTo(plan: FleetPlan, port: number, resume: string): Promise<boolean> {
  return (await etcdKeys(plan.etcd)).get(`/tcp-relay/ports/${port}`) === hashOf(resume);
}

test('fleet: etcd loses its data; the node of a live registration writes it back, and another service does not get its port', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t, 20);
  const nodes = await Promise.all([1, 2].map((n) => startNode(t, plan, n)));
  const resume = randomHex(32);
  const first = await register(t, plan, nodes[0]!, `resume=${resume}`);
  await eventually(() => assignedTo(plan, first.port, resume), 5000, 'the assignment in etcd');

  const before = nodes[0]!.stderr.length;
  await etcdWipe(plan.etcd);
  await nodes[0]!.waitFor('stderr', new RegExp(`"publicPort":${first.port},"msg":"fleet: port assignment re-created in etcd"`), 10_000);
  assert.ok(await assignedTo(plan, first.port, resume), 'the assignment is back, for the same key');
  // Its node key too, lost with the rest while its lease lived on.
  await nodes[0]!.waitFor('stderr', /"msg":"fleet: node registered in etcd"/, 10_000, before);
  // A newcomer on the other node asks for that very port: it gets another one.
  const second = await register(t, plan, nodes[1]!, `resume=${randomHex(32)} port=${first.port}`);
  assert.notEqual(second.port, first.port);
});

test('fleet: a port etcd gave to a newer service while its holder could not write it back goes back to the older registration', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t, 20);
  const nodes = await Promise.all([1, 2].map((n) => startNode(t, plan, n)));
  const [one, two] = nodes as [FleetNode, FleetNode];
  const olderResume = randomHex(32);
  const older = await register(t, plan, one, `resume=${olderResume}`);
  await eventually(() => assignedTo(plan, older.port, olderResume), 5000, 'the assignment in etcd');

  // Node 1 is frozen while etcd loses its data, so the port is free in etcd when a newer service asks for it on node 2.
  process.kill(-one.pid, 'SIGSTOP');
  t.after(() => process.kill(-one.pid, 'SIGCONT'));
  await etcdWipe(plan.etcd);
  const newerResume = randomHex(32);
  const newer = await register(t, plan, two, `resume=${newerResume} port=${older.port} feat=rejoin`);
  assert.equal(newer.port, older.port, 'etcd gave the port away');
  process.kill(-one.pid, 'SIGCONT');

  // Node 1 takes it back for the older registration; node 2 gives it up and asks its service to register again.
  await eventually(() => assignedTo(plan, older.port, olderResume), 10_000, 'the port assigned to the older registration again');
  assert.equal(await newer.control.nextLine(10_000), 'REJOIN');
  await newer.control.endsWithin(5000);
  const again = await register(t, plan, two, `resume=${newerResume} port=${older.port} feat=rejoin`);
  assert.notEqual(again.port, older.port, 'the newer service gets another port');
  await two.waitFor('stderr', new RegExp(`"publicPort":${older.port},"msg":"fleet: etcd gives this port \\(or this key\\) to an older assignment; this node gives the port up"`));

  // Node 2 no longer listens on the port; node 1 still serves it to the older service.
  const stray = connect({ host: two.address, port: older.port });
  const how = new Promise<string | undefined>((resolve) => {
    stray.once('connect', () => resolve('connected'));
    stray.once('error', (err: NodeJS.ErrnoException) => resolve(err.code));
  });
  assert.equal(await within(how, 5000, 'a connection to the given-up port'), 'ECONNREFUSED');
  const client = connect({ host: one.address, port: older.port });
  client.on('error', () => {});
  t.after(() => client.destroy());
  await nextConnect(older.control, 10_000);
});
