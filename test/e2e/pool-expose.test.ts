import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eventually, listenLocal, portBlock, within } from '../helpers/net.js';
import { NO_ENV_SECRET, startRelay, startService, type RelayProcess, type ServiceProcess } from '../helpers/processes.js';
import { askPool } from '../helpers/pool-member.js';
import { planFleet, startFleet } from '../helpers/fleet.js';
import { requireTools } from '../helpers/tools.js';

// Pools end to end (issue 19): ./relay, and ./expose members in front of small servers
// that each answer with their own name, then echo.

const CLEAN_ENV = { ...NO_ENV_SECRET, RELAY_TENANT: '', RELAY_TENANTS: '' };

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pool-expose-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A server that greets each connection with `name` and a newline, then echoes. */
async function namedServer(t: TestContext, name: string): Promise<{ port: number; stop: () => void }> {
  const { server, port } = await listenLocal(t, (socket) => {
    socket.write(`${name}\n`);
    socket.pipe(socket);
  });
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return {
    port,
    stop: () => {
      server.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}

function member(t: TestContext, relay: RelayProcess, targetPort: number, poolFile: string, extra: string[] = [], checkInterval = '0.2'): Promise<ServiceProcess> {
  return startService(t, 'expose', ['127.0.0.1', String(relay.port), String(targetPort), '--pool-file', poolFile, '--log-format', 'json', '--check-interval', checkInterval, ...extra], CLEAN_ENV);
}

function killGroup(child: ServiceProcess): void {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** A relay and three members named a, b, c sharing one pool file. */
async function threeMembers(
  t: TestContext,
  relayArgs: string[] = [],
  checkInterval?: string,
): Promise<{ relay: RelayProcess; file: string; names: string[]; servers: Awaited<ReturnType<typeof namedServer>>[]; members: ServiceProcess[]; port: number }> {
  const block = portBlock();
  const relay = await startRelay(t, ['--ports', `${block.first}-${block.last}`, ...relayArgs], CLEAN_ENV);
  const file = path.join(tempDir(t), 'pool.key');
  const names = ['a', 'b', 'c'];
  const servers = await Promise.all(names.map((name) => namedServer(t, name)));
  const members: ServiceProcess[] = [];
  for (const server of servers) members.push(await member(t, relay, server.port, file, [], checkInterval));
  const addresses = new Set(members.map((m) => `${m.publicHost}:${m.publicPort}`));
  assert.equal(addresses.size, 1, `all three print one address: ${[...addresses].join(' ')}`);
  return { relay, file, names, servers, members, port: members[0]!.publicPort };
}

interface LoopResult {
  byName: Map<string, number>;
  failed: { started: number; name: string; why: string }[];
}

/**
 * `total` clients, `inFlight` at a time: each sends a line and must get a name and the
 * line back. A client records when it started, so a failure can be set against a kill.
 */
async function clientLoop(port: number, total: number, inFlight: number, onStarted?: (n: number, open: ReadonlySet<number>) => void, host = '127.0.0.1'): Promise<LoopResult> {
  const result: LoopResult = { byName: new Map(), failed: [] };
  let next = 0;
  // The clients started and not finished: a slow one may have started well before later ones.
  const open = new Set<number>();
  const one = (n: number): Promise<void> =>
    new Promise((resolve) => {
      const say = `client ${n}\n`;
      const client = connect({ port, host, allowHalfOpen: true });
      client.setEncoding('latin1');
      let got = '';
      let done = false;
      const finish = (why: string | undefined): void => {
        if (done) return;
        done = true;
        open.delete(n);
        clearTimeout(timer);
        client.destroy();
        const lf = got.indexOf('\n');
        const name = lf >= 0 ? got.slice(0, lf) : '';
        if (why === undefined) result.byName.set(name, (result.byName.get(name) ?? 0) + 1);
        else result.failed.push({ started: n, name, why });
        resolve();
      };
      const timer = setTimeout(() => finish(`no answer in 10 s (got ${JSON.stringify(got)})`), 10_000);
      client.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
      client.on('close', () => finish(`closed after ${JSON.stringify(got)}`));
      // A member killed with nothing unread: its kernel sends a FIN, which the relay passes on.
      client.on('end', () => finish(`ended after ${JSON.stringify(got)}`));
      client.on('data', (text: string) => {
        got += text;
        const lf = got.indexOf('\n');
        if (lf >= 0 && got.slice(lf + 1) === say) finish(undefined);
      });
      client.write(say);
    });
  const worker = async (): Promise<void> => {
    while (next < total) {
      const n = next++;
      onStarted?.(n, open);
      open.add(n);
      await one(n);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return result;
}

test('pool of three ./expose: one address, 300 clients spread within 20 % of even', async (t) => {
  const { names, port } = await threeMembers(t);
  const { byName, failed } = await within(clientLoop(port, 300, 6), 30_000, '300 clients');
  assert.deepEqual(failed, []);
  for (const name of names) {
    const got = byName.get(name) ?? 0;
    assert.ok(got >= 80 && got <= 120, `${name} answered ${got} of 300: ${JSON.stringify([...byName])}`);
  }
});

test('pool of three ./expose: kill -9 of one member under load fails at most the clients in flight at the kill, and only its own', async (t) => {
  const { port, members } = await threeMembers(t);
  const inFlight = 4;
  let killedAt = -1;
  let openAtKill = new Set<number>();
  const loop = clientLoop(port, 200, inFlight, (n, open) => {
    if (n === 60) {
      killedAt = n;
      openAtKill = new Set(open);
      killGroup(members[1]!);
    }
  });
  const { byName, failed } = await within(loop, 30_000, '200 clients');
  assert.ok(failed.length <= inFlight, `at most the ${inFlight} in flight fail: ${JSON.stringify(failed)}`);
  for (const f of failed) {
    // In flight at the kill, or started before the relay could know of it.
    const aroundKill = openAtKill.has(f.started) || (f.started >= killedAt && f.started <= killedAt + inFlight);
    assert.ok(aroundKill, `only clients around the kill fail: ${JSON.stringify(f)}, open at the kill: ${JSON.stringify([...openAtKill])}`);
    assert.ok(f.name === '' || f.name === 'b', `only the killed member's clients fail: ${JSON.stringify(f)}`);
  }
  assert.ok((byName.get('a') ?? 0) > 50 && (byName.get('c') ?? 0) > 50, JSON.stringify([...byName]));
});

test('pool of three ./expose: SIGTERM of one member under load fails no client, and it exits 0', async (t) => {
  const { port, members } = await threeMembers(t);
  const loop = clientLoop(port, 200, 4, (n) => {
    if (n === 60) members[1]!.signal('SIGTERM');
  });
  const { byName, failed } = await within(loop, 30_000, '200 clients');
  assert.deepEqual(failed, []);
  assert.equal((await within(members[1]!.exited, 10_000, 'the member to exit')).code, 0);
  assert.equal(
    [...byName.values()].reduce((a, b) => a + b, 0),
    200,
  );
});

test('pool of ./expose: with every member killed a client is held at the door, and the first member back answers it', async (t) => {
  const { port, members, file, relay, servers } = await threeMembers(t);
  for (const m of members) killGroup(m);
  await Promise.all(members.map((m) => within(m.exited, 5000, 'a member to die')));
  const held = askPool(t, port, 'held\n', 10_000);
  // Nothing can answer it yet: no member is running.
  const back = await member(t, relay, servers[2]!.port, file);
  assert.equal(back.publicPort, port, 'the pool keeps its address');
  assert.deepEqual(await held, { name: 'c', echoed: 'held\n' });
});

test('pool of three ./expose: a member whose target is down gets no client, and no client fails', async (t) => {
  const { port, members, servers, relay } = await threeMembers(t);
  servers[0]!.stop();
  await members[0]!.waitFor('stderr', /target is down/, 5000);
  // The relay's own word that it heard HEALTH down: until then a client may still reach a's
  // prewarmed connection, and a prewarmed client cannot be offered again.
  await relay.waitFor('stderr', /pool member says its target is down/, 5000);
  const { byName, failed } = await within(clientLoop(port, 60, 3), 20_000, '60 clients');
  assert.deepEqual(failed, []);
  assert.equal(byName.get('a'), undefined, JSON.stringify([...byName]));
  assert.equal((byName.get('b') ?? 0) + (byName.get('c') ?? 0), 60);
});

test('pool of three ./expose: a member whose target refuses a client says HEALTH down at once, not at its next check: at most one or two clients fail, not a third of them', async (t) => {
  // Checks a minute apart: only the failed client can tell the member its target is gone.
  const { port, members, servers } = await threeMembers(t, [], '60');
  servers[0]!.stop();
  const { byName, failed } = await within(clientLoop(port, 30, 1), 20_000, '30 clients');
  assert.ok(failed.length <= 2, `the first client a got (a prewarmed one cannot be declined), hardly more: ${JSON.stringify(failed)}`);
  assert.equal(byName.get('a'), undefined, JSON.stringify([...byName]));
  assert.equal((byName.get('b') ?? 0) + (byName.get('c') ?? 0) + failed.length, 30);
  await members[0]!.waitFor('stderr', /target is down/, 1000);
});

test('pool of ./expose: a stranger with another pool file gets another address', async (t) => {
  const { relay, port } = await threeMembers(t);
  const server = await namedServer(t, 'stranger');
  const stranger = await member(t, relay, server.port, path.join(tempDir(t), 'other.key'));
  assert.notEqual(stranger.publicPort, port);
  assert.equal((await askPool(t, stranger.publicPort, 'x\n')).name, 'stranger');
});

test('pool of ./expose under tenants: one pool file under two tenants is two addresses; a maxServices 1 tenant runs three members of one pool', async (t) => {
  const block = portBlock();
  const tenantsFile = path.join(tempDir(t), 'tenants.json');
  const tenants = [
    { name: 'alice', secrets: ['alice-secret'], maxServices: 1 },
    { name: 'bob', secrets: ['bob-secret'] },
  ];
  writeFileSync(tenantsFile, JSON.stringify({ tenants }), { mode: 0o600 });
  const relay = await startRelay(t, ['--ports', `${block.first}-${block.last}`, '--tenants', tenantsFile], CLEAN_ENV);
  const file = path.join(tempDir(t), 'pool.key');
  const as = (tenant: string): string[] => ['--tenant', tenant, '--secret', `${tenant}-secret`];
  const alice: ServiceProcess[] = [];
  for (const name of ['a1', 'a2', 'a3']) alice.push(await member(t, relay, (await namedServer(t, name)).port, file, as('alice')));
  assert.equal(new Set(alice.map((m) => m.publicPort)).size, 1, 'alice: one address for three members');
  const bob = await member(t, relay, (await namedServer(t, 'b1')).port, file, as('bob'));
  assert.notEqual(bob.publicPort, alice[0]!.publicPort, 'the same pool key under another tenant is another pool');
  const { byName, failed } = await within(clientLoop(alice[0]!.publicPort, 30, 3), 20_000, '30 clients');
  assert.deepEqual(failed, []);
  assert.deepEqual([...byName.keys()].sort(), ['a1', 'a2', 'a3']);
  assert.equal((await askPool(t, bob.publicPort, 'x\n')).name, 'b1');
});

test('pool of three ./expose on a 2-node fleet: one address on both nodes, each spreads among all three; after a kill -9 both serve with the two left', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t);
  const nodes = await startFleet(t, plan, 2);
  const file = path.join(tempDir(t), 'pool.key');
  const hosts = nodes.map((node) => node.address).join(',');
  const members: ServiceProcess[] = [];
  for (const name of ['a', 'b', 'c']) {
    const server = await namedServer(t, name);
    members.push(await startService(t, 'expose', [hosts, String(plan.port), String(server.port), '--pool-file', file, '--log-format', 'json'], CLEAN_ENV));
  }
  const ports = new Set(members.map((m) => `${m.publicHost}:${m.publicPort}`));
  assert.equal(ports.size, 1, `one address: ${[...ports].join(' ')}`);
  const port = members[0]!.publicPort;
  // Every member is registered with both nodes before the address is relied on at each.
  await Promise.all(
    nodes.map((node) => eventually(() => node.stderr.filter((line) => /"msg":"(pool member joined|service registered)"/.test(line)).length >= 3, 10_000, `three members at ${node.address}`)),
  );
  for (const node of nodes) {
    const { byName, failed } = await within(clientLoop(port, 30, 3, undefined, node.address), 20_000, `30 clients via ${node.address}`);
    assert.deepEqual(failed, []);
    assert.deepEqual([...byName.keys()].sort(), ['a', 'b', 'c'], `${node.address} spreads among all three`);
  }
  const before = nodes.map((node) => node.stderr.length);
  killGroup(members[0]!);
  await Promise.all(nodes.map((node, i) => node.waitFor('stderr', /"msg":"service (left|closed the control connection)/, 10_000, before[i])));
  for (const node of nodes) {
    const { byName, failed } = await within(clientLoop(port, 20, 2, undefined, node.address), 20_000, `20 clients via ${node.address}`);
    assert.deepEqual(failed, []);
    assert.deepEqual([...byName.keys()].sort(), ['b', 'c'], `${node.address} serves with the two left`);
  }
});
