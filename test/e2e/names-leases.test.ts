import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eventually, howItEnds, portBlock, readAtLeast, readToEnd, within } from '../helpers/net.js';
import { NO_ENV_SECRET, ROOT, start, startRelay, startService, type RelayProcess } from '../helpers/processes.js';
import { Peer } from '../helpers/protocol.js';

// Names as leases of their own: no port of the range each, old state files, a tenant's
// limits and reloads, and a hitless upgrade with clients held at a name's door.

const DOMAIN = 'names.test';
const ENV = { ...NO_ENV_SECRET, RELAY_TENANT: '' };

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-names-leases-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A relay whose public range is the first port of a block, with one names port at its end. */
async function namesRelay(t: TestContext, extra: string[] = []): Promise<{ relay: RelayProcess; namesPort: number; first: number }> {
  const block = portBlock(100);
  const args = ['--ports', `${block.first}-${block.first}`, '--names-port', String(block.last), '--names-domain', DOMAIN, ...extra];
  return { relay: await startRelay(t, args, ENV), namesPort: block.last, first: block.first };
}

/** An HTTP head naming `name` through the names port; an echo service sends it straight back. */
async function named(port: number, name: string): Promise<Socket> {
  const client = connect(port, '127.0.0.1');
  client.on('error', () => {});
  await once(client, 'connect');
  client.write(`GET / HTTP/1.1\r\nHost: ${name}.${DOMAIN}\r\n\r\n`);
  return client;
}

async function echoes(port: number, name: string): Promise<void> {
  const client = await named(port, name);
  const got = await readAtLeast(client, 20);
  assert.match(got.toString(), new RegExp(`^GET / HTTP/1\\.1\\r\\nHost: ${name.replace('.', '\\.')}\\.`));
  client.destroy();
}

function echo(t: TestContext, relay: RelayProcess, args: string[]) {
  return start(t, path.join(ROOT, 'echoserver'), ['localhost', String(relay.port), ...args], ENV);
}

test('names take no port of the range: three names and a port service on a relay whose range is one port; a state file of the first names relays (a slot port per name) is read as name leases', async (t) => {
  const dir = tempDir(t);
  const resume = path.join(dir, 'old.key');
  const key = 'ab'.repeat(16);
  writeFileSync(resume, `${key}\n`, { mode: 0o600 });
  const state = path.join(dir, 'state.json');
  const block = portBlock(100);
  // Written by the first names relays: the name's lease on a slot port of the range.
  const old = { key: createHash('sha256').update(key).digest('hex'), port: block.first, until: null, name: `old.${DOMAIN}` };
  writeFileSync(state, JSON.stringify({ version: 1, leases: [old] }) + '\n', { mode: 0o600 });
  const args = ['--ports', `${block.first}-${block.first}`, '--names-port', String(block.last), '--names-domain', DOMAIN, '--state', state];
  const relay = await startRelay(t, args, ENV);

  const stranger = await Peer.open(t, relay.port);
  stranger.send('HELLO 1 host=localhost feat=name name=old');
  assert.equal(await stranger.nextLine(), `ERR limit name old.${DOMAIN} is taken by another service`);
  for (const name of ['a', 'b']) await startService(t, 'echoserver', ['localhost', String(relay.port), '--name', name], ENV);
  const owner = await startService(t, 'echoserver', ['localhost', String(relay.port), '--name', 'old', '--resume-file', resume], ENV);
  assert.equal(`${owner.publicHost}:${owner.publicPort}`, `old.${DOMAIN}:${block.last}`);
  const plain = await startService(t, 'echoserver', ['localhost', String(relay.port)], ENV);
  assert.equal(plain.publicPort, block.first, 'the one port of the range is still free for a port service');
  for (const name of ['a', 'b', 'old']) await echoes(block.last, name);

  relay.signal('SIGTERM');
  await relay.exited;
  const leases = (JSON.parse(readFileSync(state, 'utf8')) as { leases: Record<string, unknown>[] }).leases;
  const names = leases.filter((lease) => lease['name'] !== undefined);
  assert.deepEqual(names.map((lease) => lease['name']).sort(), [`a.${DOMAIN}`, `b.${DOMAIN}`, `old.${DOMAIN}`]);
  assert.ok(
    names.every((lease) => lease['port'] === undefined),
    'a name lease has no port',
  );
});

test("names and tenants: the tenant's maxClientsPerIp applies on the names port once the name is known; SIGHUP that narrows its names ends the registration (exit 2) and resets its tunnels", async (t) => {
  const dir = tempDir(t);
  const tenants = path.join(dir, 'tenants.json');
  const write = (names: string[]) => writeFileSync(tenants, JSON.stringify({ tenants: [{ name: 'alice', secrets: ['s3cret'], names, maxClientsPerIp: 1 }] }), { mode: 0o600 });
  write(['*.alice']);
  const { relay, namesPort } = await namesRelay(t, ['--tenants', tenants]);
  const service = await startService(t, 'echoserver', ['localhost', String(relay.port), '--tenant', 'alice', '--secret', 's3cret', '--name', 'www.alice'], ENV);
  const open = await named(namesPort, 'www.alice');
  await readAtLeast(open, 20);
  const second = await named(namesPort, 'www.alice');
  assert.equal(await howItEnds(second), 'reset', "over the tenant's 1 client per address");
  await relay.waitFor('stderr', /"reason":"clients-per-ip".*over its tenant's 1 open clients from its address/);

  const ending = howItEnds(open, 10_000);
  write(['api.alice']);
  relay.signal('SIGHUP');
  assert.equal((await within(service.exited, 10_000, 'the service whose name was taken away to stop')).code, 2);
  assert.match(service.stderr.join('\n'), /the relay refuses the name: name www\.alice\.names\.test is outside tenant alice's names/);
  assert.equal(await ending, 'reset', 'its open tunnel is reset');
  const after = await named(namesPort, 'www.alice');
  assert.match((await readAtLeast(after, 10)).toString(), /^HTTP\/1\.1 404 /, 'the name is free again: no reservation is kept for it');
});

test("names, tenants and workers: a names-port client passed to the worker serving its name meets the tenant's maxClientsPerIp there", async (t) => {
  const tenants = path.join(tempDir(t), 'tenants.json');
  writeFileSync(tenants, JSON.stringify({ tenants: [{ name: 'alice', secrets: ['s3cret'], names: ['*.alice'], maxClientsPerIp: 1 }] }), { mode: 0o600 });
  const { relay, namesPort } = await namesRelay(t, ['--workers', '2', '--tenants', tenants, '--metrics', '127.0.0.1:0']);
  const metricsUrl = (await relay.waitFor('stderr', /"metrics":"(http:[^"]+)"/))[1]!;
  const passed = async (): Promise<number> => Number(/^relay_names_clients_passed_total (\d+)$/m.exec(await (await fetch(metricsUrl)).text())?.[1] ?? NaN);
  await startService(t, 'echoserver', ['localhost', String(relay.port), '--tenant', 'alice', '--secret', 's3cret', '--name', 'www.alice'], ENV);
  // Each client lands at either worker: over a dozen rounds, some second clients land
  // at the worker without the name and are passed on (the counter says how many).
  for (let round = 0; round < 12; round++) {
    const from = relay.stderr.length;
    const open = await named(namesPort, 'www.alice');
    await readAtLeast(open, 20);
    const second = await named(namesPort, 'www.alice');
    assert.equal(await howItEnds(second), 'reset', `round ${round}: over the tenant's 1 client per address`);
    await relay.waitFor('stderr', /"reason":"clients-per-ip".*over its tenant's 1 open clients from its address/, 5000, from);
    open.destroy();
    await relay.waitFor('stderr', /"msg":"tunnel closed"/, 5000, from);
  }
  assert.ok((await passed()) > 0, 'some clients were passed between the workers (else this test tested nothing)');
});

test('names and upgrades: a client held at a name door, its first bytes already read, is handed to the new worker on SIGUSR2 and served when the service is back', async (t) => {
  const resume = path.join(tempDir(t), 'echo.key');
  const { relay, namesPort } = await namesRelay(t, ['--hold-timeout', '30', '--metrics', '127.0.0.1:0']);
  const metricsUrl = (await relay.waitFor('stderr', /"metrics":"(http:[^"]+)"/))[1]!;
  const heldNow = async (): Promise<boolean> => /^relay_clients_held 1$/m.test(await (await fetch(metricsUrl)).text());
  const first = echo(t, relay, ['--name', 'held', '--resume-file', resume]);
  await first.waitFor('stdout', /^established relay address: held\./);
  const from = relay.stderr.length;
  first.signal('SIGKILL');
  await relay.waitFor('stderr', /"msg":"service left"/, 5000, from);
  const held = await named(namesPort, 'held');
  await eventually(heldNow, 5000, 'the client held at the name door');

  const upgrading = relay.stderr.length;
  relay.signal('SIGUSR2');
  await relay.waitFor('stderr', /"msg":"upgrade: new worker serving/, 20_000, upgrading);
  await relay.waitFor('stderr', /"msg":"old worker exited"/, 10_000, upgrading);
  const back = echo(t, relay, ['--name', 'held', '--resume-file', resume]);
  await back.waitFor('stdout', /^established relay address: held\./);
  const got = await readAtLeast(held, 41);
  assert.match(got.toString(), /^GET \/ HTTP\/1\.1\r\nHost: held\.names\.test\r\n\r\n/, 'the bytes read before the upgrade reach the service first');
  held.write('after');
  assert.equal((await readAtLeast(held, 5)).toString(), 'after');
  held.destroy();
});

test('names: RELAY_NAME is not read as --name (a name belongs to one service, not to an environment)', async (t) => {
  const block = portBlock(100);
  const relay = await startRelay(t, ['--ports', `${block.first}-${block.last}`], ENV);
  const service = await startService(t, 'echoserver', ['localhost', String(relay.port)], { ...ENV, RELAY_NAME: 'www' });
  assert.equal(service.publicHost, 'localhost', 'registered for a port: a relay without names ports would have refused the name');
});

/** An HTTP server on loopback that answers every request with `label`. */
async function labelled(t: TestContext, label: string): Promise<number> {
  const server = createHttpServer((_request, res) => res.end(label));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return (server.address() as AddressInfo).port;
}

/** The body of one request for `name` through the names port. */
async function answerOf(port: number, name: string): Promise<string> {
  const client = connect(port, '127.0.0.1');
  client.on('error', () => {});
  client.write(`GET / HTTP/1.1\r\nHost: ${name}.${DOMAIN}\r\nConnection: close\r\n\r\n`);
  const text = (await within(readToEnd(client), 5000, `the answer for ${name}`)).toString();
  return text.slice(text.indexOf('\r\n\r\n') + 4);
}

test('names and workers: a names-port client that reaches a worker without its name is passed to the worker that has it, exact before a wildcard at the other worker', async (t) => {
  const { relay, namesPort } = await namesRelay(t, ['--workers', '2']);
  const expose = async (name: string): Promise<number> => {
    const from = relay.stderr.length;
    await startService(t, 'expose', ['localhost', String(relay.port), String(await labelled(t, name)), '--name', name], ENV);
    const line = await relay.waitFor('stderr', /"pid":(\d+).*"msg":"service registered"/, 5000, from);
    return Number(line[1]);
  };
  const wildcardWorker = await expose('*.shop');
  // A control connection lands at either worker: register until a name is at the other.
  let exact: string | undefined;
  for (let i = 0; i < 12 && exact === undefined; i++) if ((await expose(`n${i}.shop`)) !== wildcardWorker) exact = `n${i}.shop`;
  assert.ok(exact !== undefined, 'a name registered at the other worker within 12 tries');
  // Each client reaches either worker; every one must reach the service of its name.
  for (let i = 0; i < 10; i++) {
    assert.equal(await answerOf(namesPort, exact), exact, `request ${i} for the exact name`);
    assert.equal(await answerOf(namesPort, 'other.shop'), '*.shop', `request ${i} for a name only the wildcard has`);
  }
  assert.match(await answerOf(namesPort, 'nobody.elsewhere'), /no service/i, 'an unknown name still gets the 404');
});
