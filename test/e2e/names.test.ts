import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, connect as connectTcp, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect as connectTls, createServer as createTlsServer } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { promisify } from 'node:util';
import { howItEnds, portBlock, readToEnd, within } from '../helpers/net.js';
import { NO_ENV_SECRET, ROOT, start, startRelay, startService, type RelayProcess } from '../helpers/processes.js';
import { Peer } from '../helpers/protocol.js';
import { certDir, selfSignedCert } from '../helpers/tls.js';
import { requireTools } from '../helpers/tools.js';

const run = promisify(execFile);
const DOMAIN = 'names.test';
const ENV = { ...NO_ENV_SECRET, RELAY_TENANT: '' };

interface NamesRelay {
  relay: RelayProcess;
  names: [number, number];
  args: string[];
}

/** A relay with two names ports just above its public range, under DOMAIN. */
async function namesRelay(t: TestContext, extra: string[] = []): Promise<NamesRelay> {
  const block = portBlock(100);
  const names: [number, number] = [block.last - 1, block.last];
  const args = ['--ports', `${block.first}-${block.last - 10}`, '--names-port', String(names[0]), '--names-port', String(names[1]), '--names-domain', DOMAIN, '--handshake-timeout', '1', ...extra];
  return { relay: await startRelay(t, args, ENV), names, args };
}

/** A server on loopback that answers each connection with its own `label`, over TLS with its own certificate or as HTTP. */
async function labelled(t: TestContext, kind: 'tls' | 'http', label: string): Promise<{ port: number; cert?: string }> {
  let server;
  let cert: string | undefined;
  if (kind === 'tls') {
    const files = await selfSignedCert(await certDir(t), label);
    cert = readFileSync(files.cert, 'utf8');
    server = createTlsServer({ cert, key: readFileSync(files.key) }, (socket) => socket.end(`I am ${label}\n`));
  } else {
    server = createHttpServer((req, res) => res.end(`I am ${label}, asked for ${req.headers.host}\n`));
  }
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return { port: (server.address() as AddressInfo).port, ...(cert === undefined ? {} : { cert }) };
}

function expose(t: TestContext, relay: RelayProcess, target: number, name: string, args: string[] = []) {
  return startService(t, 'expose', ['localhost', String(relay.port), String(target), '--name', name, ...args], ENV);
}

test('names: openssl s_client and a Node TLS client reach two TLS services by SNI on either names port, with the services own certificates', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const { relay, names } = await namesRelay(t);
  const a = await labelled(t, 'tls', 'alpha');
  const b = await labelled(t, 'tls', 'beta');
  const exposedA = await expose(t, relay, a.port, 'alpha');
  await expose(t, relay, b.port, 'beta');
  assert.equal(`${exposedA.publicHost}:${exposedA.publicPort}`, `alpha.${DOMAIN}:${names[0]}`);

  // s_client reports the server's close as an error on some versions: what it printed is what counts.
  const { stdout } = await run('openssl', ['s_client', '-connect', `127.0.0.1:${names[1]}`, '-servername', `alpha.${DOMAIN}`, '-quiet'], { timeout: 10_000 }).catch((err: { stdout: string }) => err);
  assert.match(stdout, /I am alpha/);

  const client = connectTls({ port: names[0], host: '127.0.0.1', servername: `beta.${DOMAIN}`, rejectUnauthorized: false });
  await once(client, 'secureConnect');
  // TLS passes through: the certificate is the service's own, not the relay's.
  assert.equal(client.getPeerX509Certificate()?.fingerprint256, new X509Certificate(b.cert!).fingerprint256);
  assert.equal((await readToEnd(client)).toString(), 'I am beta\n');

  const unknown = await run('openssl', ['s_client', '-connect', `127.0.0.1:${names[0]}`, '-servername', `gamma.${DOMAIN}`], { timeout: 10_000 }).catch((err: { stderr: string }) => err);
  assert.match(unknown.stderr, /unrecognized name|alert number 112/);
  await relay.waitFor('stderr', /"reason":"unknown-name".*unknown host gamma\.names\.test/);
});

test('names: curl reaches two HTTP services and a wildcard by Host on one port; an unknown name gets a 404 with one line', async (t) => {
  if (!requireTools(t, 'curl')) return;
  const { relay, names } = await namesRelay(t);
  for (const [label, name] of [
    ['one', 'one'],
    ['two', 'two'],
    ['any', '*.w'],
  ] as const)
    await expose(t, relay, (await labelled(t, 'http', label)).port, name);
  const curl = (host: string, port = names[1]) => run('curl', ['-s', '-w', ' %{http_code}', '--max-time', '5', '--resolve', `${host}:${port}:127.0.0.1`, `http://${host}:${port}/`]);
  assert.equal((await curl(`one.${DOMAIN}`)).stdout, `I am one, asked for one.${DOMAIN}:${names[1]}\n 200`);
  assert.equal((await curl(`TWO.${DOMAIN}`, names[0])).stdout, `I am two, asked for TWO.${DOMAIN}:${names[0]}\n 200`);
  assert.match((await curl(`a.b.w.${DOMAIN}`)).stdout, /^I am any, asked for a\.b\.w\.names\.test:\d+\n 200$/);
  assert.equal((await curl(`three.${DOMAIN}`)).stdout, `no service is registered for three.${DOMAIN}\n 404`);
});

test('names: a client that names nothing in time, or sends 16 KiB without a name, or neither TLS nor HTTP, is reset and counted', async (t) => {
  const { relay, names } = await namesRelay(t);
  const silent = connectTcp(names[0], '127.0.0.1');
  silent.write('GET / HTTP/1.1\r\n');
  assert.equal(await howItEnds(silent, 5000), 'reset');
  const long = connectTcp(names[0], '127.0.0.1');
  long.write(`GET / HTTP/1.1\r\nX: ${'a'.repeat(17_000)}`);
  assert.equal(await howItEnds(long, 5000), 'reset');
  const ssh = connectTcp(names[1], '127.0.0.1');
  ssh.write('SSH-2.0-OpenSSH_9.6\r\n');
  assert.equal(await howItEnds(ssh, 5000), 'reset');
  for (const reason of ['prelude-timeout', 'prelude-too-long', 'prelude-bad']) await relay.waitFor('stderr', new RegExp(`"reason":"${reason}"`));
});

test('names: a name stays its key across a restart of the service and of the relay (--state); meanwhile no one else gets it, and clients wait', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-names-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const state = path.join(dir, 'leases.json');
  const resume = path.join(dir, 'resume');
  const first = await namesRelay(t, ['--state', state]);
  const echo = (relay: RelayProcess, args: string[]) => start(t, path.join(ROOT, 'echoserver'), ['localhost', String(relay.port), ...args], ENV);
  const owner = echo(first.relay, ['--name', 'keep', '--resume-file', resume]);
  await owner.waitFor('stdout', new RegExp(`^established relay address: keep\\.${DOMAIN}:${first.names[0]}$`));
  owner.signal('SIGKILL');
  await owner.exited;
  // Away: the name is reserved for its key, and a client is held until the service is back.
  const rival = await Peer.open(t, first.relay.port);
  rival.send('HELLO 1 host=localhost feat=name name=keep');
  assert.equal(await rival.nextLine(), `ERR limit name keep.${DOMAIN} is taken by another service`);
  const held = connectTcp(first.names[1], '127.0.0.1');
  held.write(`GET / HTTP/1.1\r\nHost: keep.${DOMAIN}\r\n\r\n`);
  const back = echo(first.relay, ['--name', 'keep', '--resume-file', resume]);
  await back.waitFor('stdout', /^established relay address: keep\./);
  const echoed = await within(once(held, 'data'), 5000, 'the held client echoed');
  assert.match(String(echoed[0]), /^GET \/ HTTP\/1\.1\r\nHost: keep/);
  held.destroy();

  first.relay.signal('SIGTERM');
  await first.relay.exited;
  assert.match(readFileSync(state, 'utf8'), /"name":"keep\.names\.test"/);
  const second = await startRelay(t, first.args, ENV);
  const stranger = await Peer.open(t, second.port);
  stranger.send('HELLO 1 host=localhost feat=name name=keep');
  assert.equal(await stranger.nextLine(), `ERR limit name keep.${DOMAIN} is taken by another service`);
  const again = echo(second, ['--name', 'keep', '--resume-file', resume]);
  await again.waitFor('stdout', new RegExp(`^established relay address: keep\\.${DOMAIN}:${first.names[0]}$`));
});

test('names: a tenant gets only names its patterns allow; a relay without --names-port refuses a name; an older relay that ignores name= stops the service', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-names-tenants-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tenants = path.join(dir, 'tenants.json');
  writeFileSync(tenants, JSON.stringify({ tenants: [{ name: 'alice', secrets: ['s3cret'], names: ['*.alice'] }] }), { mode: 0o600 });
  const { relay, names } = await namesRelay(t, ['--tenants', tenants]);
  const service = (name: string) => ['localhost', String(relay.port), '--tenant', 'alice', '--secret', 's3cret', '--name', name];
  const www = await startService(t, 'echoserver', service('www.alice'), ENV);
  assert.equal(`${www.publicHost}:${www.publicPort}`, `www.alice.${DOMAIN}:${names[0]}`);
  // A settings error: the program stops (exit 2) instead of retrying for ever.
  const outside = start(t, path.join(ROOT, 'echoserver'), service('www.bob'), ENV);
  assert.equal((await within(outside.exited, 10_000, 'the service outside its names to stop')).code, 2);
  assert.match(outside.stderr.join('\n'), /echoserver: the relay refuses the name: name www\.bob is outside tenant alice's names/);

  const plain = await startRelay(t, ['--ports', `${names[0] - 5}-${names[0] - 1}`], ENV);
  const refused = await Peer.open(t, plain.port);
  refused.send('HELLO 1 host=localhost feat=name name=www');
  assert.equal(await refused.nextLine(), 'ERR bad-name this relay has no --names-port: it cannot give names');
  const unaware = await Peer.open(t, plain.port);
  unaware.send('HELLO 1 host=localhost name=www');
  assert.equal(await unaware.nextLine(), 'ERR bad-line this relay has no --names-port: it cannot give names');
  const noNamesPort = start(t, path.join(ROOT, 'echoserver'), ['localhost', String(plain.port), '--name', 'www'], ENV);
  assert.equal((await within(noNamesPort.exited, 10_000, 'the service to stop')).code, 2);
  assert.match(noNamesPort.stderr.join('\n'), /the relay refuses the name: this relay has no --names-port/);
  const malformed = start(t, path.join(ROOT, 'echoserver'), ['localhost', String(plain.port), '--name', 'Bad_Name'], ENV);
  assert.equal((await within(malformed.exited, 10_000, 'the service with a malformed name to stop')).code, 2);
  assert.match(malformed.stderr.join('\n'), /name must be DNS labels/);

  // An older relay: it ignores name= and answers OK without feat=name.
  const old = createNetServer((socket) => socket.once('data', () => socket.write(`OK localhost:${names[0] - 3} data=1 heartbeat=5000 resume=${'a'.repeat(32)} feat=rejoin,leave\n`)));
  old.listen(0, '127.0.0.1');
  await once(old, 'listening');
  t.after(() => old.close());
  const stopped = start(t, path.join(ROOT, 'echoserver'), ['127.0.0.1', String((old.address() as AddressInfo).port), '--name', 'www'], ENV);
  const { code } = await within(stopped.exited, 10_000, 'the service to stop');
  assert.equal(code, 2);
  assert.deepEqual(stopped.stdout, []);
  assert.match(stopped.stderr.join('\n'), /echoserver: the relay at 127\.0\.0\.1:\d+ cannot give names \(its OK lacks feat=name: an older relay\), so --name www cannot be served there/);
});
