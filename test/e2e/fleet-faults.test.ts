import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { listenViaRelay } from '../../src/index.js';
import { deadline, eventually, within } from '../helpers/net.js';
import { addressEcho, CLIENT_ADDRESS, etcdKeys, everyNodeServes, exchange, planFleet, service, startFleet, startNode } from '../helpers/fleet.js';
import { Peer } from '../helpers/protocol.js';
import { requireTools } from '../helpers/tools.js';

// The relay fleet when parts of it fail: a node killed, etcd stopped. fleet.test.ts has the rest.

test('fleet: kill -9 of a node; clients through the others keep working; the restarted node serves the same ports', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t);
  const nodes = await startFleet(t, plan);
  const { port } = await service(t, plan, '127.0.0.1,127.0.0.2,127.0.0.3');
  await eventually(
    async () =>
      everyNodeServes(nodes, port).then(
        () => true,
        () => false,
      ),
    10_000,
    'every node serves the service',
  );
  // Clients through the survivors, back to back, across the kill.
  let failures = 0;
  let served = 0;
  let longestMs = 0;
  let running = true;
  const load = (async () => {
    while (running) {
      const begun = performance.now();
      try {
        await exchange(served % 2 === 0 ? '127.0.0.2' : '127.0.0.3', port, 1024);
        served++;
        longestMs = Math.max(longestMs, performance.now() - begun);
      } catch {
        failures++;
      }
    }
  })();
  await eventually(() => served > 10, 5000, 'clients served before the kill');
  process.kill(-nodes[0]!.pid, 'SIGKILL');
  await nodes[0]!.exited;
  const atKill = served;
  await eventually(() => served > atKill + 20, 10_000, 'clients served after the kill');
  running = false;
  await load;
  t.diagnostic(`${served} clients through the surviving nodes, ${failures} failed, longest ${longestMs.toFixed(0)} ms`);
  assert.equal(failures, 0, 'no client through a surviving node failed');

  const restarted = await startNode(t, plan, 1);
  await eventually(
    async () =>
      exchange(restarted.address, port).then(
        () => true,
        () => false,
      ),
    20_000,
    'the restarted node serves the same port',
  );
});

test('fleet: etcd stopped (SIGSTOP, 10 s): open tunnels and registrations keep working, a new service waits or fails cleanly, all recovers after SIGCONT', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t);
  // Grace 3 s: the assignments' etcd leases (TTL 5 s at least) expire during the stop, so the nodes must re-create them.
  const nodes = await Promise.all([1, 2, 3].map((n) => startNode(t, plan, n, ['--resume-grace', '3'])));
  await Promise.all(nodes.map((node) => node.waitFor('stderr', /"nodes":3,"msg":"fleet: nodes changed"/, 10_000)));
  const first = await service(t, plan, '127.0.0.1,127.0.0.2,127.0.0.3');
  await eventually(
    async () =>
      everyNodeServes(nodes, first.port).then(
        () => true,
        () => false,
      ),
    10_000,
    'every node serves the first service',
  );
  // A tunnel open across the stop.
  const open = connect({ host: '127.0.0.2', port: first.port, localAddress: CLIENT_ADDRESS });
  open.on('error', () => {});
  t.after(() => open.destroy());
  await once(open, 'connect', { signal: deadline(5000) });

  plan.etcd.signal('SIGSTOP');
  t.after(() => plan.etcd.signal('SIGCONT'));
  const stoppedAt = performance.now();
  const late = listenViaRelay(addressEcho(t), { host: '127.0.0.1,127.0.0.2,127.0.0.3', port: plan.port, backoff: { initialMs: 250, maxMs: 1000 } });
  t.after(() => late.close({ leave: true }));
  // The stop lasts a fixed 10 s (past the etcd leases' TTL); every 500 ms the fleet is
  // checked again. That interval paces the checks, it waits for no event.
  while (performance.now() - stoppedAt < 10_000) {
    await everyNodeServes(nodes, first.port);
    open.write('ping\n');
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.equal(late.publicAddress, undefined, 'no port is given without the fleet agreeing');
  plan.etcd.signal('SIGCONT');
  const lateAddress = await within(late.established(), 20_000, 'the new service registered after SIGCONT');
  assert.notEqual(lateAddress.port, first.port);
  // Its etcd lease expired during the stop; the nodes where it is registered put it back, on the same port.
  await Promise.race(nodes.map((node) => node.waitFor('stderr', new RegExp(`"publicPort":${first.port},"msg":"fleet: port assignment re-created in etcd"`), 15_000)));
  assert.ok((await etcdKeys(plan.etcd)).has(`/tcp-relay/ports/${first.port}`));
  // Established at the first node that took it; the others follow within the service's backoff.
  await eventually(
    async () =>
      everyNodeServes(nodes, lateAddress.port).then(
        () => true,
        () => false,
      ),
    10_000,
    'every node serves the new service',
  );
  await everyNodeServes(nodes, first.port);
  assert.ok(!open.destroyed, 'the tunnel opened before the stop is still open');
  const refused = nodes.flatMap((node) => node.stderr).filter((line) => line.includes('etcd unreachable')).length;
  t.diagnostic(`log lines about etcd being unreachable: ${refused}`);
});

test('fleet: etcd stalled (SIGSTOP); a new key is refused with ERR limit after the documented 5 s, not later', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t, 20);
  const node = await startNode(t, plan, 1);
  plan.etcd.signal('SIGSTOP');
  t.after(() => plan.etcd.signal('SIGCONT'));
  const peer = await Peer.open(t, plan.port, { host: node.address });
  const sent = performance.now();
  peer.send('HELLO 1 host=relay.test');
  assert.match(await peer.nextLine(10_000), /^ERR limit the fleet cannot agree on a port now \(etcd unreachable\)/);
  const waitedMs = performance.now() - sent;
  t.diagnostic(`refused after ${waitedMs.toFixed(0)} ms`);
  // docs/protocol.md, section 16: "waits up to 5 s"; a little slack for a loaded machine.
  assert.ok(waitedMs >= 4500 && waitedMs <= 5600, `refused after ${waitedMs.toFixed(0)} ms, not about 5 s`);
});
