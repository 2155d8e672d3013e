import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { computeProof } from '../../src/protocol/auth.js';
import { assertEchoes, assertNewClientEchoes } from '../helpers/echo.js';
import { dial, freeBlock, howItEnds, readAtLeast, refusedHow, within, eventually } from '../helpers/net.js';
import { NO_ENV_SECRET, ROOT, start, startRelay, startService, type RelayProcess, type ServiceProcess } from '../helpers/processes.js';
import { parseOk, Peer, registerRaw } from '../helpers/protocol.js';
import { connectionRefused } from '../helpers/observe.js';

/** No RELAY_* of the test runner's environment may reach the programs. */
const CLEAN_ENV = { ...NO_ENV_SECRET, RELAY_TENANT: '', RELAY_TENANTS: '' };

interface TenantEntry {
  name: string;
  secrets: string[];
  ports?: string;
  maxServices?: number;
  maxClients?: number;
  maxClientsPerIp?: number;
}

interface Shared {
  relay: RelayProcess;
  file: string;
  block: { first: number; last: number };
  /** Rewrites the tenants file and sends SIGHUP; resolves once the relay has logged the outcome. */
  reload(tenants: TenantEntry[] | string): Promise<string>;
}

/** A relay with --tenants; `tenants` gets the relay's port block to carve ranges from. */
async function sharedRelay(t: TestContext, tenants: (block: { first: number; last: number }) => TenantEntry[], args: string[] = []): Promise<Shared> {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-tenants-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'tenants.json');
  const block = await freeBlock(20);
  const write = (content: TenantEntry[] | string): void => writeFileSync(file, typeof content === 'string' ? content : JSON.stringify({ tenants: content }), { mode: 0o600 });
  write(tenants(block));
  const relay = await startRelay(t, ['--ports', `${block.first}-${block.last}`, '--tenants', file, ...args], CLEAN_ENV);
  return {
    relay,
    file,
    block,
    async reload(content) {
      write(content);
      const from = relay.stderr.length;
      relay.signal('SIGHUP');
      const match = await relay.waitFor('stderr', /tenants file (not )?reloaded/, 5000, from);
      return match.input ?? '';
    },
  };
}

function echoserver(t: TestContext, relay: RelayProcess, tenant: string, secret: string, args: string[] = []): Promise<ServiceProcess> {
  return startService(t, 'echoserver', ['127.0.0.1', String(relay.port), '--tenant', tenant, '--secret', secret, ...args], CLEAN_ENV);
}

/** HELLO (with the given options), AUTH, PROOF with `secret`: the relay's answer line. */
async function tryRegister(t: TestContext, port: number, options: string, secret: string): Promise<{ control: Peer; line: string }> {
  const control = await Peer.open(t, port, { autoPong: true });
  control.send(`HELLO 1 host=127.0.0.1${options}`);
  const auth = /^AUTH ([0-9a-f]{64})$/.exec(await control.nextLine());
  assert.ok(auth, 'with --tenants the relay always challenges');
  control.send(`PROOF ${computeProof(secret, auth[1]!)}`);
  return { control, line: await control.nextLine() };
}

test('tenants: each gets only its own ports; a quota reached costs only that tenant, and is recovered', async (t) => {
  const { relay, block } = await sharedRelay(t, (b) => [
    { name: 'alice', secrets: ['alice-secret'], ports: `${b.first}-${b.first + 4}`, maxServices: 2 },
    { name: 'bob', secrets: ['bob-secret'], ports: `${b.first + 10},${b.first + 12}-${b.first + 13}` },
  ]);
  const alice1 = await echoserver(t, relay, 'alice', 'alice-secret');
  const alice2 = await echoserver(t, relay, 'alice', 'alice-secret', ['--public-port', String(block.first + 10)]);
  for (const service of [alice1, alice2]) assert.ok(service.publicPort >= block.first && service.publicPort <= block.first + 4, `alice got ${service.publicPort}`);

  const third = await tryRegister(t, relay.port, ' tenant=alice', 'alice-secret');
  assert.match(third.line, /^ERR limit tenant alice has its maximum of 2 services/);

  const bob = await echoserver(t, relay, 'bob', 'bob-secret', ['--public-port', String(alice1.publicPort)]);
  // Any port of the list: another program (a concurrent test's outgoing connection, in
  // the ephemeral range) may hold the first for a moment.
  assert.ok([block.first + 10, block.first + 12, block.first + 13].includes(bob.publicPort), `a port outside bob's list gets one inside it, not ${bob.publicPort}`);
  await assertNewClientEchoes(t, bob.publicPort, 'ping\n');
  await assertNewClientEchoes(t, alice1.publicPort, 'ping\n');

  // A stop without a resume file frees the slot at once (LEAVE); a crash leaves a
  // reservation that counts, and alice's next service ends her own oldest one.
  alice1.signal('SIGTERM');
  await alice1.exited;
  const alice3 = await echoserver(t, relay, 'alice', 'alice-secret');
  const from = relay.stderr.length;
  alice2.signal('SIGKILL');
  await relay.waitFor('stderr', /"tenant":"alice".*"msg":"service left"/, 5000, from);
  const alice4 = await echoserver(t, relay, 'alice', 'alice-secret');
  await assertNewClientEchoes(t, alice3.publicPort, 'ping\n');
  await assertNewClientEchoes(t, alice4.publicPort, 'ping\n');
  await relay.waitFor('stderr', /reservation released early/); // stderr may trail the service's stdout
  assert.ok(
    relay.stderr.some((line) => /"tenant":"bob".*"msg":"service registered"/.test(line)),
    'logs carry the tenant',
  );
  assert.ok(!relay.stderr.some((line) => /alice-secret|bob-secret/.test(line)), 'no secret in the log');
});

test('tenants: an unknown tenant, a wrong secret and no tenant get the same refusal after the same exchange; two secrets both work', async (t) => {
  const { relay } = await sharedRelay(t, () => [{ name: 'alice', secrets: ['old-secret', 'new-secret'] }]);
  const wrongSecret = await tryRegister(t, relay.port, ' tenant=alice', 'guess');
  const unknownTenant = await tryRegister(t, relay.port, ' tenant=mallory', 'old-secret');
  const noTenant = await tryRegister(t, relay.port, '', 'old-secret');
  assert.match(wrongSecret.line, /^ERR auth /);
  assert.equal(unknownTenant.line, wrongSecret.line);
  assert.equal(noTenant.line, wrongSecret.line);
  for (const { control } of [wrongSecret, unknownTenant, noTenant]) await eventually(() => control.gotFin, 5000, 'the relay to end the refused connection');

  for (const secret of ['old-secret', 'new-secret']) {
    const { line } = await tryRegister(t, relay.port, ' tenant=alice', secret);
    assert.match(line, /^OK /, `either secret registers (${secret})`);
  }
  // The CLI without --tenant on a tenants relay: refused for good, exit 1.
  const bare = start(t, path.join(ROOT, 'echoserver'), ['127.0.0.1', String(relay.port), '--secret', 'old-secret'], CLEAN_ENV);
  assert.equal((await within(bare.exited, 10_000, 'echoserver to exit')).code, 1);
  assert.match(bare.stderr.join('\n'), /authentication failed/);
});

test("tenants: another tenant presenting alice's resume key gets neither her port nor her session", async (t) => {
  const { relay, block } = await sharedRelay(t, (b) => [
    { name: 'alice', secrets: ['a'], ports: `${b.first}-${b.first + 3}` },
    { name: 'bob', secrets: ['b'], ports: `${b.first}-${b.first + 3}` },
  ]);
  const alice = await tryRegister(t, relay.port, ' tenant=alice', 'a');
  const aliceOk = parseOk(alice.line);
  const resume = ` resume=${aliceOk.resume} port=${aliceOk.publicPort}`;
  const bob = await tryRegister(t, relay.port, ` tenant=bob${resume}`, 'b');
  const bobOk = parseOk(bob.line);
  assert.notEqual(bobOk.publicPort, aliceOk.publicPort, "bob does not take alice's live port");
  assert.equal(alice.control.ended, undefined, 'alice is not superseded');
  alice.control.socket.destroy();
  await relay.waitFor('stderr', /"tenant":"alice".*"msg":"service left"/);
  const bobAgain = await tryRegister(t, relay.port, ` tenant=bob${resume}`, 'b');
  assert.notEqual(parseOk(bobAgain.line).publicPort, aliceOk.publicPort, 'nor her reserved one');
  const aliceBack = await tryRegister(t, relay.port, ` tenant=alice${resume}`, 'a');
  assert.equal(parseOk(aliceBack.line).publicPort, aliceOk.publicPort, 'alice gets her port back');
  assert.ok(block.first <= aliceOk.publicPort);
});

test("tenants: maxClients counts open public clients over all the tenant's services", async (t) => {
  const { relay } = await sharedRelay(t, () => [{ name: 'alice', secrets: ['a'], maxClients: 2 }], ['--metrics', '127.0.0.1:0']);
  const one = await echoserver(t, relay, 'alice', 'a');
  const two = await echoserver(t, relay, 'alice', 'a');
  const first = await dial(t, one.publicPort);
  const second = await dial(t, two.publicPort);
  for (const client of [first, second]) {
    client.write('x');
    await readAtLeast(client, 1, 5000);
  }
  assert.equal(await refusedHow(t, two.publicPort), 'reset', 'the third client is reset at once, not left waiting');
  await relay.waitFor('stderr', /tenant alice is at its maxClients of 2/);
  const metricsUrl = (await relay.waitFor('stderr', /"metrics":"(http:[^"]+)"/))[1]!;
  const metrics = await (await fetch(metricsUrl)).text();
  assert.match(metrics, /relay_tenant_clients\{tenant="alice"\} 2/);
  assert.match(metrics, /relay_tenant_services\{tenant="alice"\} 2/);
  assert.match(metrics, /relay_refusals_total\{reason="tenant-clients"\} 1/);
  assert.match(metrics, /relay_tenant_refusals_total\{tenant="alice",quota="clients"\} 1/);
  const services = (await (await fetch(metricsUrl.replace(/\/metrics$/, '/api/services'))).json()) as unknown;
  assert.match(JSON.stringify(services), /"tenant":"alice"/, 'the dashboard shows the tenant');
  first.destroy();
  await eventually(async () => /relay_tenant_clients\{tenant="alice"\} 1/.test(await (await fetch(metricsUrl)).text()), 5000, 'the count to drop');
  await assertNewClientEchoes(t, one.publicPort, 'ping\n');
});

test('SIGHUP: a removed tenant is cut off at once (services exit 1, tunnels reset, port closed); others go on', async (t) => {
  const shared = await sharedRelay(t, () => [
    { name: 'alice', secrets: ['a'] },
    { name: 'bob', secrets: ['b'] },
  ]);
  const { relay } = shared;
  const alice = await echoserver(t, relay, 'alice', 'a');
  const bob = await echoserver(t, relay, 'bob', 'b');
  const bobTunnel = await dial(t, bob.publicPort);
  bobTunnel.write('hi');
  await readAtLeast(bobTunnel, 2, 5000);
  const aliceTunnel = await dial(t, alice.publicPort);
  aliceTunnel.write('hi');
  await readAtLeast(aliceTunnel, 2, 5000);

  const line = await shared.reload([{ name: 'alice', secrets: ['a'] }]);
  assert.match(line, /"removed":\["bob"\]/);
  assert.equal(await howItEnds(bobTunnel), 'reset', "bob's open tunnel is reset");
  const exit = await within(bob.exited, 10_000, 'bob to exit');
  assert.equal(exit.code, 1);
  assert.match(bob.stderr.join('\n'), /echoserver: authentication failed/);
  await relay.waitFor('stderr', /"tenant":"bob".*"msg":"tunnel closed"/);
  // The master holds a copy of every listening socket (cluster, SCHED_NONE) and closes
  // it when the worker tells it to, over IPC: closed within milliseconds, not in the same instant.
  await eventually(() => connectionRefused(bob.publicPort), 3000, "bob's public port to stop listening");

  aliceTunnel.write('still here');
  assert.equal((await readAtLeast(aliceTunnel, 10, 5000)).toString(), 'still here', "alice's tunnel goes on");
  const again = await tryRegister(t, relay.port, ' tenant=bob', 'b');
  assert.match(again.line, /^ERR auth /);
});

test('SIGHUP: a removed secret ends the registrations that proved it (rotation keeps the others); a corrupt file keeps the old tenants', async (t) => {
  const shared = await sharedRelay(t, () => [{ name: 'alice', secrets: ['old'] }]);
  const { relay } = shared;
  const oldService = await echoserver(t, relay, 'alice', 'old');
  await shared.reload([{ name: 'alice', secrets: ['old', 'new'] }]);
  const newService = await echoserver(t, relay, 'alice', 'new');
  await assertNewClientEchoes(t, oldService.publicPort, 'ping\n');

  const corrupt = await shared.reload('{"tenants": [ {"name": "alice", "secrets": ["new"] ');
  assert.match(corrupt, /tenants file not reloaded/);
  assert.ok(!corrupt.includes('"new"'), 'the rejected file is not quoted');
  await assertNewClientEchoes(t, oldService.publicPort, 'ping\n');

  await shared.reload([{ name: 'alice', secrets: ['new'] }]);
  assert.equal((await within(oldService.exited, 10_000, 'the old-secret service to exit')).code, 1);
  assert.match(oldService.stderr.join('\n'), /authentication failed/);
  await assertNewClientEchoes(t, newService.publicPort, 'ping\n');
  assert.ok(!relay.stderr.some((l) => /"(old|new)"/.test(l)), 'no secret in the log');
});

test('SIGHUP without --tenants is a logged no-op', async (t) => {
  const block = await freeBlock(10);
  const relay = await startRelay(t, ['--ports', `${block.first}-${block.last}`, '--log-level', 'info'], CLEAN_ENV);
  const service = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], CLEAN_ENV);
  relay.signal('SIGHUP');
  await relay.waitFor('stderr', /SIGHUP: nothing to reload/);
  await assertNewClientEchoes(t, service.publicPort, 'ping\n');
  const { registration } = await registerRaw(t, relay.port);
  assert.ok(registration.publicPort >= block.first, 'registration works as before');
});

test('upgrade (SIGUSR2): the new worker reads the tenants file itself and each tenant keeps its port', async (t) => {
  const shared = await sharedRelay(t, (b) => [{ name: 'alice', secrets: ['a'], ports: `${b.first + 5}-${b.first + 9}` }]);
  const { relay } = shared;
  const alice = await echoserver(t, relay, 'alice', 'a');
  const from = relay.stderr.length;
  relay.signal('SIGUSR2');
  await relay.waitFor('stderr', /"msg":"upgrade: new worker serving/, 20_000, from);
  const again = await alice.waitFor('stdout', /^established relay address: .+:(\d+)$/, 10_000, 1);
  assert.equal(Number(again[1]), alice.publicPort, 'the same port after the upgrade');
  await assertNewClientEchoes(t, alice.publicPort, 'ping\n');
  // The new worker answers SIGHUP (through the master) with the file it read.
  const line = await shared.reload([{ name: 'alice', secrets: ['a'], ports: `${shared.block.first + 5}-${shared.block.first + 9}` }]);
  assert.match(line, /"tenants":1,"removed":\[\]/);
});

test("tenants: a tenant's maxClientsPerIp replaces the relay-wide limit on that tenant's ports", async (t) => {
  const shared = await sharedRelay(
    t,
    (block) => [
      { name: 'strict', secrets: ['s-secret'], ports: `${block.first}-${block.first + 4}`, maxClientsPerIp: 2 },
      { name: 'lenient', secrets: ['l-secret'], ports: `${block.first + 5}-${block.first + 9}` },
    ],
    ['--max-clients-per-ip', '10'],
  );
  const strict = await echoserver(t, shared.relay, 'strict', 's-secret');
  const lenient = await echoserver(t, shared.relay, 'lenient', 'l-secret');
  // Each client stays open: the per-address limits count them.
  const echoes = async (port: number): Promise<void> => assertEchoes(await dial(t, port), 'hi\n');
  await echoes(strict.publicPort);
  await echoes(strict.publicPort);
  assert.equal(await refusedHow(t, strict.publicPort), 'reset', "the strict tenant's third client from one address is refused");
  // Three open already from this address: the relay-wide limit of 10 still lets the lenient tenant's clients in.
  for (let i = 0; i < 3; i++) await echoes(lenient.publicPort);
});
