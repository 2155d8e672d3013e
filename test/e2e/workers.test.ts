import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { computeProof } from '../../src/protocol/auth.js';
import { assertEchoes, assertNewClientEchoes } from '../helpers/echo.js';
import { dial, eventually, portBlock, readAtLeast, refusedHow } from '../helpers/net.js';
import { NO_ENV_SECRET, startRelay, startService, type RelayProcess } from '../helpers/processes.js';
import { dialData, nextConnect, randomHex, registerRaw, type Peer, type Registration } from '../helpers/protocol.js';

/** How many raw registrations a test makes, at most, to reach the worker it wants (the kernel picks one each time). */
const TRIES = 40;

async function twoWorkers(t: TestContext, args: string[] = []): Promise<{ relay: RelayProcess; dataPorts: number[]; block: { first: number; last: number } }> {
  const block = portBlock();
  const relay = await startRelay(t, ['--ports', `${block.first}-${block.last}`, '--workers', '2', ...args], NO_ENV_SECRET);
  const dataPorts = relay.stderr.flatMap((line) => /"dataPort":(\d+).*"msg":"relay listening"/.exec(line)?.[1] ?? []).map(Number);
  assert.equal(new Set(dataPorts).size, 2, `two workers, each with a data port of its own: ${dataPorts.join(', ')}`);
  return { relay, dataPorts, block };
}

/** A tenant's name and secret, for a relay with --tenants. */
interface TenantLogin {
  tenant: string;
  secret: string;
}

/** Registers by hand (resume key `resume`) until the relay's worker with data port `data` takes it (`!=` a data port: any other). */
async function registerAt(t: TestContext, relay: RelayProcess, resume: string, at: (dataPort: number) => boolean, login?: TenantLogin): Promise<{ control: Peer; registration: Registration }> {
  const hello = `HELLO 1 host=127.0.0.1 resume=${resume}${login === undefined ? '' : ` tenant=${login.tenant}`}`;
  const proof = login === undefined ? undefined : (nonce: string) => computeProof(login.secret, nonce);
  for (let i = 0; i < TRIES; i++) {
    const attempt = await registerRaw(t, relay.port, { hello, ...(proof === undefined ? {} : { proof }) });
    if (at(attempt.registration.dataPort)) return attempt;
    attempt.control.socket.destroy();
  }
  throw new Error(`${TRIES} registrations and none reached the worker wanted`);
}

test('workers: services registered at either worker are reached on their own public ports', async (t) => {
  const { relay, dataPorts } = await twoWorkers(t);
  const seen = new Map<number, number>();
  for (let i = 0; i < TRIES && seen.size < 2; i++) {
    const { control, registration } = await registerRaw(t, relay.port);
    if (seen.has(registration.dataPort)) continue;
    seen.set(registration.dataPort, registration.publicPort);
    const client = await dial(t, registration.publicPort);
    const { token } = await nextConnect(control);
    const { peer, reply } = await dialData(t, registration.dataPort, `DATA ${token}`);
    assert.match(reply, /^CLIENT /);
    client.write('ping');
    assert.equal((await peer.readBytes(4)).toString(), 'ping');
  }
  assert.deepEqual([...seen.keys()].sort(), [...dataPorts].sort(), 'services reached both workers');
  assert.equal(new Set(seen.values()).size, 2, 'and got distinct public ports');
});

test('workers: a key that comes back at the other worker keeps its port, and the client held meanwhile reaches it', async (t) => {
  const { relay } = await twoWorkers(t, ['--hold-timeout', '30']);
  const resume = randomHex(32);
  const first = await registerAt(t, relay, resume, () => true);
  const port = first.registration.publicPort;
  first.control.socket.destroy();
  const held = await dial(t, port);
  held.write('held bytes');
  const moved = await registerAt(t, relay, resume, (data) => data !== first.registration.dataPort);
  assert.equal(moved.registration.publicPort, port, 'the same public port at the other worker');
  const { token } = await nextConnect(moved.control, 10_000);
  const { peer, reply } = await dialData(t, moved.registration.dataPort, `DATA ${token}`);
  assert.match(reply, /^CLIENT /);
  assert.equal((await peer.readBytes(10)).toString(), 'held bytes');
  await relay.waitFor('stderr', /"publicPort":\d+.*registered at another worker/);
});

test("workers: a held client the other worker adopts counts there against its tenant's maxClientsPerIp", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-workers-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tenants = path.join(dir, 'tenants.json');
  writeFileSync(tenants, JSON.stringify({ tenants: [{ name: 'alice', secrets: ['alice-secret'], maxClientsPerIp: 1 }] }), { mode: 0o600 });
  // No relay-wide per-address limit: the tenant's is the only one that counts this client.
  const { relay } = await twoWorkers(t, ['--hold-timeout', '30', '--tenants', tenants]);
  const login = { tenant: 'alice', secret: 'alice-secret' };
  const resume = randomHex(32);
  const first = await registerAt(t, relay, resume, () => true, login);
  const port = first.registration.publicPort;
  first.control.socket.destroy();
  const held = await dial(t, port);
  held.write('held');
  const moved = await registerAt(t, relay, resume, (data) => data !== first.registration.dataPort, login);
  const { token } = await nextConnect(moved.control, 10_000);
  const { peer } = await dialData(t, moved.registration.dataPort, `DATA ${token}`);
  assert.equal((await peer.readBytes(4)).toString(), 'held');
  assert.equal(await refusedHow(t, port), 'reset', "a second client from the address is over the tenant's 1 at the worker that has the first");
});

test('workers: a client waiting for its dial-back when its key moves to the other worker is handed over, its bytes unread', async (t) => {
  const { relay } = await twoWorkers(t);
  const resume = randomHex(32);
  const first = await registerAt(t, relay, resume, () => true);
  const port = first.registration.publicPort;
  const client = await dial(t, port);
  client.write('waiting bytes');
  await nextConnect(first.control); // never dialed back: the client waits at the first worker
  const moved = await registerAt(t, relay, resume, (data) => data !== first.registration.dataPort);
  assert.equal(moved.registration.publicPort, port);
  const { token } = await nextConnect(moved.control, 10_000);
  const { peer, reply } = await dialData(t, moved.registration.dataPort, `DATA ${token}`);
  assert.match(reply, /^CLIENT /);
  assert.equal((await peer.readBytes(13)).toString(), 'waiting bytes');
  peer.socket.write('answer');
  assert.equal((await readAtLeast(client, 6, 5000)).toString(), 'answer');
});

test("workers: the one --metrics listener shows every worker's services and figures", async (t) => {
  const { relay, dataPorts } = await twoWorkers(t, ['--metrics', '127.0.0.1:0']);
  const listening = relay.stderr.filter((line) => /"msg":"metrics listening"/.test(line));
  assert.equal(listening.length, 1, 'one --metrics listener for the relay');
  const base = /"metrics":"(http:[^"]+)\/metrics"/.exec(listening[0]!)![1]!;
  const ports: number[] = [];
  for (const dataPort of dataPorts) {
    const { control, registration } = await registerAt(t, relay, randomHex(32), (data) => data === dataPort);
    ports.push(registration.publicPort);
    const client = await dial(t, registration.publicPort);
    const { token } = await nextConnect(control);
    await dialData(t, registration.dataPort, `DATA ${token}`);
    client.write('x');
  }
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^relay_services 2$/m);
  assert.match(metrics, /^relay_workers 2$/m);
  await eventually(async () => /^relay_tunnels_open 2$/m.test(await (await fetch(`${base}/metrics`)).text()), 5000, 'both tunnels in /metrics');
  assert.equal((metrics.match(/^# TYPE relay_services gauge$/gm) ?? []).length, 1, 'each family once');
  const services = (await (await fetch(`${base}/api/services`)).json()) as { publicPort: number }[];
  assert.deepEqual(services.map((service) => service.publicPort).sort(), ports.sort(), 'services of both workers listed');
  const overview = (await (await fetch(`${base}/api/overview`)).json()) as { relay: { services: number; workers?: number } };
  assert.equal(overview.relay.services, 2);
  assert.equal(overview.relay.workers, 2);
});

test('workers: --max-services holds across the workers', async (t) => {
  const { relay } = await twoWorkers(t, ['--max-services', '2']);
  for (let i = 0; i < 2; i++) await registerRaw(t, relay.port);
  for (let i = 0; i < 6; i++) {
    const refused = await registerRaw(t, relay.port).then(
      () => assert.fail('a third service registered'),
      (err: Error) => err,
    );
    assert.match(refused.message, /ERR limit relay has its maximum of 2 services/);
  }
});

test('workers: --data-port is the first of one data port per worker', async (t) => {
  const block = portBlock();
  const dataPort = block.last - 1;
  const relay = await startRelay(t, ['--ports', `${block.first}-${block.last - 2}`, '--workers', '2', '--data-port', String(dataPort)], NO_ENV_SECRET);
  const ports = relay.stderr.flatMap((line) => /"dataPort":(\d+).*"msg":"relay listening"/.exec(line)?.[1] ?? []).map(Number);
  assert.deepEqual(ports.sort(), [dataPort, dataPort + 1]);
});

test('workers: a worker that dies is restarted, and its services come back', async (t) => {
  const { relay } = await twoWorkers(t);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  await assertNewClientEchoes(t, echo.publicPort, 'before');
  const pids = relay.stderr.flatMap((line) => /"pid":(\d+).*"msg":"relay listening"/.exec(line)?.[1] ?? []).map(Number);
  const from = relay.stderr.length;
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  await relay.waitFor('stderr', /worker restarted/, 20_000, from);
  await echo.waitFor('stdout', new RegExp(`:${echo.publicPort}$`), 20_000, 1);
  await assertNewClientEchoes(t, echo.publicPort, 'after', 20_000);
});

test('workers: SIGUSR2 replaces the workers one after the other; services echo after, a tunnel open through it goes on', async (t) => {
  const { relay } = await twoWorkers(t, ['--drain-timeout', '30']);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  const open = await dial(t, echo.publicPort);
  await assertEchoes(open, 'before', 5000);
  const from = relay.stderr.length;
  process.kill(relay.pid, 'SIGUSR2');
  await relay.waitFor('stderr', /upgrade: new worker serving/, 30_000, from);
  const second = relay.stderr.findIndex((line, i) => i >= from && /upgrade: new worker serving/.test(line));
  await relay.waitFor('stderr', /upgrade: new worker serving/, 30_000, second + 1);
  assert.ok(!relay.stderr.slice(from).some((line) => /other ports/.test(line)), 'each new worker listens where its predecessor did');
  await assertEchoes(open, 'during', 5000);
  await assertNewClientEchoes(t, echo.publicPort, 'after', 20_000);
});
