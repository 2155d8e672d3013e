import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { listenViaRelay, type RelayError, type RelayRegistration } from '../../src/index.js';
import { addressEcho, exchange, planFleet, startFleet } from '../helpers/fleet.js';
import { eventually, portsFlag, within } from '../helpers/net.js';
import { countLines } from '../helpers/observe.js';
import { NO_ENV_SECRET, ROOT, start, startRelay, startService, type Child } from '../helpers/processes.js';
import { randomHex } from '../helpers/protocol.js';
import { certFiles } from '../helpers/tls.js';
import { requireTools } from '../helpers/tools.js';

const run = promisify(execFile);

function echoserver(t: TestContext, args: string[]): Child {
  return start(t, path.join(ROOT, 'echoserver'), [...args, '--log-format', 'json'], NO_ENV_SECRET);
}

/** Waits for the program to exit and returns its code. */
async function exitCode(child: Child): Promise<number | null> {
  return (await within(child.exited, 15_000, 'the program to exit')).code;
}

async function tlsRelay(t: TestContext): Promise<{ port: number; cert: string }> {
  const { cert, key } = await certFiles(t);
  const relay = await startRelay(t, [...portsFlag(), '--tls-cert', cert, '--tls-key', key], NO_ENV_SECRET);
  return { port: relay.port, cert };
}

test('wrong settings: a service pointed at an HTTP server exits 2 with one line naming what answered', async (t) => {
  const http = createServer((_req, res) => res.end('hello'));
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  t.after(() => http.close());
  const port = (http.address() as AddressInfo).port;
  const service = echoserver(t, ['127.0.0.1', String(port)]);
  assert.equal(await exitCode(service), 2);
  assert.deepEqual(service.stderr, [`echoserver: 127.0.0.1:${port} is not a relay's control port: it answered "HTTP/1.1 400 Bad Request"`]);
  assert.deepEqual(service.stdout, []);
});

test('wrong settings: a plain service against a TLS relay keeps trying, says the relay may expect TLS, and never "lost the relay"', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const relay = await tlsRelay(t);
  const service = echoserver(t, ['localhost', String(relay.port)]);
  await eventually(() => countLines(service.stderr, /cannot register with the relay; retrying/, /may expect TLS \(--tls\)/) >= 2, 15_000, 'two attempts with the TLS hint');
  assert.equal(countLines(service.stderr, /lost the relay/), 0);
  assert.equal(service.process.exitCode, null, 'still running');
});

test('wrong settings: a TLS service against a plain relay exits 2: the relay does not speak TLS', async (t) => {
  const relay = await startRelay(t, portsFlag(), NO_ENV_SECRET);
  const service = echoserver(t, ['localhost', String(relay.port), '--tls']);
  assert.equal(await exitCode(service), 2);
  assert.deepEqual(service.stderr, [`echoserver: localhost:${relay.port} does not speak TLS (it answered in plain text): leave out --tls and --ca`]);
});

test('wrong settings: --tls with a certificate that fails verification exits 2 with the reason and --ca; with --ca it registers', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const relay = await tlsRelay(t);
  const service = echoserver(t, ['localhost', String(relay.port), '--tls']);
  assert.equal(await exitCode(service), 2);
  assert.equal(service.stderr.length, 1);
  assert.match(
    service.stderr[0]!,
    /^echoserver: the TLS certificate of localhost:\d+ failed verification \(DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate\): give the CA that signed it with --ca FILE$/,
  );
  await startService(t, 'echoserver', ['localhost', String(relay.port), '--ca', relay.cert], NO_ENV_SECRET);
});

test('wrong settings: a relay name that does not resolve is retried with "cannot resolve HOST", never "lost the relay"', async (t) => {
  const service = echoserver(t, ['relay.nonexistent.invalid', '8080']);
  await eventually(() => countLines(service.stderr, /cannot resolve relay\.nonexistent\.invalid; retrying/) >= 2, 15_000, 'two attempts that say the name does not resolve');
  assert.equal(countLines(service.stderr, /lost the relay|cannot register/), 0);
  assert.equal(service.process.exitCode, null, 'still running');
});

test('a service given --secret against a relay with no secret warns once, also when it registers again', async (t) => {
  const relay = await startRelay(t, portsFlag(), NO_ENV_SECRET);
  const service = await startService(t, 'echoserver', ['localhost', String(relay.port), '--secret', 's3cret', '--log-format', 'json'], NO_ENV_SECRET);
  const warning = /"level":40.*"msg":"the relay asked for no secret: the secret given is not used"/;
  assert.equal(countLines(service.stderr, warning), 1);
  // An upgrade makes the service register again (REJOIN): no second warning.
  relay.signal('SIGUSR2');
  await service.waitFor('stdout', /^established relay address: /, 15_000, 1);
  assert.equal(countLines(service.stderr, warning), 1);
});

test('expose --help lists its positionals in the order of its usage line: relayhost, relayport, target', async () => {
  const { stdout } = await run(path.join(ROOT, 'expose'), ['--help'], { env: { ...process.env, ...NO_ENV_SECRET } });
  const positionals = stdout.split('Positionals:')[1]!.split('\n\n')[0]!;
  const names = [...positionals.matchAll(/^\s+(\w+)\s/gm)].map((match) => match[1]);
  assert.deepEqual(names, ['relayhost', 'relayport', 'target']);
  assert.match(stdout, /^expose RELAYHOST RELAYPORT TARGET \[options\]/);
});

test('fleet: ERR superseded from one node stops the service on that node only; superseded on its last node, it stops for good', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t);
  const nodes = await startFleet(t, plan, 2);
  const key = randomHex(32);
  // Registered with node 1 itself, with node 2 through nodes=.
  const tunnel = listenViaRelay(addressEcho(t), { host: '127.0.0.1', port: plan.port, resumeKey: key });
  t.after(() => tunnel.close());
  const errors: Error[] = [];
  tunnel.on('error', (err: Error) => errors.push(err));
  const { port } = await within(tunnel.established(), 15_000, 'the registration');
  await eventually(() => nodes.every((node) => countLines(node.stderr, /"msg":"service registered"/) === 1), 10_000, 'a registration on each node');
  // Another process with the same key, on one node at a time.
  const intruder = (n: number): RelayRegistration => {
    const other = listenViaRelay(() => {}, { host: `127.0.0.${n}`, port: plan.port, resumeKey: key, fleetMember: true });
    t.after(() => other.close());
    return other;
  };
  await within(intruder(1).established(), 10_000, 'the intruder on node 1');
  await exchange('127.0.0.2', port);
  assert.deepEqual(errors, []);
  assert.notEqual(tunnel.publicAddress, undefined, 'still reachable through node 2');
  const stopped = new Promise<Error>((resolve) => tunnel.once('error', resolve));
  await within(intruder(2).established(), 10_000, 'the intruder on node 2');
  assert.equal(((await within(stopped, 10_000, 'the service to stop')) as RelayError).code, 'superseded');
});
