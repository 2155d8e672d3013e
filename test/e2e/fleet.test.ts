import { test, type TestContext } from 'node:test';
import { connect, type Socket } from 'node:net';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { listenViaRelay } from '../../src/index.js';
import { eventually, freePort, within } from '../helpers/net.js';
import { addressEcho, etcdCertificates, etcdKeys, everyNodeServes, exchange, planFleet, service, startFleet, startNode, type FleetNode, type FleetPlan } from '../helpers/fleet.js';
import { ROOT, withWorkers } from '../helpers/processes.js';
import { Peer, randomHex } from '../helpers/protocol.js';
import { computeProof } from '../../src/protocol/auth.js';
import { requireTools } from '../helpers/tools.js';

// A relay fleet of three nodes on 127.0.0.1-3 with the same port numbers, coordinated by
// a real etcd. fleet-faults.test.ts kills a node and stops etcd.

test('fleet: services registered through different nodes are served by every node, on one port each agreed in etcd', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t);
  const nodes = await startFleet(t, plan);
  // One service finds the others through OK nodes=; one is given the whole list.
  const viaTwo = await service(t, plan, '127.0.0.2');
  const viaThree = await service(t, plan, '127.0.0.3');
  const viaList = await service(t, plan, '127.0.0.1,127.0.0.2,127.0.0.3');
  const ports = [viaTwo.port, viaThree.port, viaList.port];
  assert.equal(new Set(ports).size, 3, 'three services, three ports');
  for (const port of ports) {
    await eventually(
      async () => {
        try {
          await everyNodeServes(nodes, port);
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      `public port ${port} served by every node`,
    );
  }
  const keys = await etcdKeys(plan.etcd);
  for (const port of ports) assert.ok(keys.has(`/tcp-relay/ports/${port}`), `port ${port} is assigned in etcd`);
  assert.equal([...keys.keys()].filter((key) => key.startsWith('/tcp-relay/nodes/')).length, 3);
});

test('fleet: 100 services registering at once across three nodes get 100 distinct ports, the same on every node', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t);
  const nodes = await startFleet(t, plan);
  const server = addressEcho(t);
  const count = 100;
  const hosts = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
  const started = performance.now();
  // Each service starts at another node; all register with all three.
  const tunnels = Array.from({ length: count }, (_, i) => listenViaRelay(server, { host: [...hosts.slice(i % 3), ...hosts.slice(0, i % 3)].join(','), port: plan.port }));
  t.after(() => tunnels.forEach((tunnel) => tunnel.close({ leave: true })));
  const ports = await within(Promise.all(tunnels.map(async (tunnel) => (await tunnel.established()).port)), 30_000, '100 registrations');
  t.diagnostic(`100 services registered in ${(performance.now() - started).toFixed(0)} ms`);
  assert.equal(new Set(ports).size, count, 'no two services share a port');
  let missing: number[] = [];
  await eventually(
    async () => {
      const keys = await etcdKeys(plan.etcd);
      missing = ports.filter((port) => !keys.has(`/tcp-relay/ports/${port}`));
      return missing.length === 0;
    },
    10_000,
    'every port assigned in etcd',
  ).catch((err: Error) => assert.fail(`${err.message}; missing ${missing.join(' ')}`));
  // Each node holds all 100, as registrations (not reservations) on the same ports.
  for (const node of nodes) {
    await eventually(() => node.stderr.filter((line) => line.includes('"msg":"service registered"')).length >= count, 20_000, `${node.address} registered every service`);
    const seen = new Set(node.stderr.filter((line) => line.includes('"msg":"service registered"')).map((line) => Number(/"publicPort":(\d+)/.exec(line)?.[1])));
    assert.deepEqual([...seen].sort(), [...ports].sort(), `${node.address} serves the same ports`);
  }
  for (const i of [0, 37, 99]) await everyNodeServes(nodes, ports[i]!);
});

test('fleet: a service that reaches only one node is served through that node; a node with another --ports range refuses to start', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t);
  // Nodes 1 and 2 advertise addresses nobody listens on: the service cannot reach them.
  const nodes = await Promise.all([
    startNode(t, plan, 1, ['--advertise', `127.0.0.1:${await freePort()}`]),
    startNode(t, plan, 2, ['--advertise', `127.0.0.2:${await freePort()}`]),
    startNode(t, plan, 3, ['--metrics', '127.0.0.3:0']),
  ]);
  await Promise.all(nodes.map((node) => node.waitFor('stderr', /"nodes":3,"msg":"fleet: nodes changed"/, 10_000)));
  const { port } = await service(t, plan, '127.0.0.3');
  await exchange('127.0.0.3', port);
  const metricsUrl = (await nodes[2]!.waitFor('stderr', /"metrics":"([^"]+)"/))[1]!;
  const metrics = await (await fetch(metricsUrl)).text();
  assert.match(metrics, /^relay_fleet_nodes 3$/m);
  assert.match(metrics, /^relay_fleet_ports_held 1$/m);
  assert.match(metrics, /^relay_etcd_requests_total [1-9]\d*$/m);
  assert.match(metrics, /^relay_etcd_errors_total 0$/m);
  assert.match(metrics, /^relay_etcd_request_seconds_count [1-9]\d*$/m);

  // A node whose --ports differs from the fleet's refuses to start, in one line; a fleet needs --ports.
  const relay = path.join(ROOT, 'relay');
  const base = [String(plan.port), '--bind', '127.0.0.4', '--etcd', plan.etcd.url, '--public-host', 'relay.test'];
  const differs = spawnSync(relay, withWorkers([...base, '--ports', `${plan.range.first}-${plan.range.last + 1}`]), { encoding: 'utf8', timeout: 20_000 });
  assert.equal(differs.status, 2);
  assert.match(differs.stderr, /^relay: --ports \S+ differs from the fleet's range \S+ \(etcd key \/tcp-relay\/range\); every node needs the same range$/m);
  const noRange = spawnSync(relay, withWorkers(base), { encoding: 'utf8', timeout: 20_000 });
  assert.equal(noRange.status, 2);
  assert.match(noRange.stderr, /needs an explicit --ports/);
});

test('fleet: etcd over TLS with client certificates; a node without one cannot reach it and gives no port', async (t) => {
  if (!requireTools(t, 'etcd', 'openssl')) return;
  const certs = mkdtempSync(path.join(tmpdir(), 'relay-etcd-certs-'));
  t.after(() => rmSync(certs, { recursive: true, force: true }));
  etcdCertificates(certs);
  const plan = await planFleet(t, 20, certs);
  const ca = path.join(certs, 'ca.pem');
  await startNode(t, plan, 1, ['--etcd-ca', ca, '--etcd-cert', path.join(certs, 'client.pem'), '--etcd-key', path.join(certs, 'client-key.pem')]);
  const { port } = await service(t, plan, '127.0.0.1');
  await exchange('127.0.0.1', port);

  const bare = await startNode(t, plan, 2, ['--etcd-ca', ca]);
  await bare.waitFor('stderr', /"msg":"fleet: etcd unreachable; registered services keep working, new keys wait"/);
  const peer = await Peer.open(t, plan.port, { host: '127.0.0.2' });
  peer.send('HELLO 1 host=127.0.0.2');
  assert.match(await peer.nextLine(10_000), /^ERR limit the fleet cannot agree on a port now \(etcd unreachable\)/);
});

/** Two fleet nodes sharing a tenants file with one tenant, alice (secret alice-secret), and these limits. */
async function tenantFleet(t: TestContext, limits: { maxServices?: number; maxClients?: number }): Promise<{ plan: FleetPlan; nodes: FleetNode[] }> {
  const plan = await planFleet(t, 40);
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-fleet-tenants-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tenantsFile = path.join(dir, 'tenants.json');
  writeFileSync(tenantsFile, JSON.stringify({ tenants: [{ name: 'alice', secrets: ['alice-secret'], ...limits }] }), { mode: 0o600 });
  return { plan, nodes: await Promise.all([1, 2].map((n) => startNode(t, plan, n, ['--tenants', tenantsFile]))) };
}

test("fleet: a tenant's maxServices is counted over every node, not per node", async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const { plan, nodes } = await tenantFleet(t, { maxServices: 1 });
  // Raw registrations that list no features: each reaches only the node it dialed, so
  // a per-node count would let alice have one service on each.
  const register = async (host: string): Promise<string> => {
    const control = await Peer.open(t, plan.port, { autoPong: true, host });
    control.send(`HELLO 1 host=relay.test tenant=alice resume=${randomHex(32)}`);
    const auth = /^AUTH ([0-9a-f]{64})$/.exec(await control.nextLine());
    assert.ok(auth !== null, 'the relay asks for a proof');
    control.send(`PROOF ${computeProof('alice-secret', auth[1]!)}`);
    return control.nextLine();
  };
  assert.match(await register(nodes[0]!.address), /^OK /);
  assert.match(await register(nodes[1]!.address), /^ERR limit tenant alice has its maximum of 1 services across the fleet/);
});

test("fleet: a tenant's maxClients counts its open clients on every node", async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const { plan, nodes } = await tenantFleet(t, { maxClients: 2 });
  const tunnel = listenViaRelay(addressEcho(t), { host: '127.0.0.1,127.0.0.2', port: plan.port, tenant: 'alice', secret: 'alice-secret' });
  t.after(() => tunnel.close({ leave: true }));
  const { port } = await within(tunnel.established(), 15_000, 'the registration');
  // Established on the first node to answer; the other node's registration follows.
  await eventually(
    async () =>
      everyNodeServes(nodes, port).then(
        () => true,
        () => false,
      ),
    10_000,
    'both nodes to serve the service',
  );
  /** A client that stays open once it got its first echo; false when the relay refused it. */
  const open = async (address: string): Promise<Socket | undefined> => {
    const socket = connect({ host: address, port });
    socket.on('error', () => {});
    t.after(() => socket.destroy());
    // A refused client is reset, possibly before connect() completes: 'close' either way.
    const answered = await within(
      new Promise<boolean>((resolve) => {
        socket.once('data', () => resolve(true));
        socket.once('close', () => resolve(false));
      }),
      5000,
      'the client to be answered or refused',
    );
    return answered ? socket : undefined;
  };
  assert.ok(await open(nodes[0]!.address), 'the first client, through node 1');
  assert.ok(await open(nodes[1]!.address), 'the second client, through node 2');
  // Node 1 learns of node 2's client within a few of its 2 s ticks; until then it may let one more in.
  await eventually(
    async () => {
      const extra = await open(nodes[0]!.address);
      extra?.destroy();
      return extra === undefined;
    },
    15_000,
    "node 1 to count node 2's client in alice's maxClients",
  );
});
