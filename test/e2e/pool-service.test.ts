import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NO_ENV_SECRET, ROOT, start, type Child } from '../helpers/processes.js';
import { within } from '../helpers/net.js';
import { ALL_FEATURES, PRE_POOL_FEATURES, ScriptedRelay } from '../helpers/scripted-relay.js';
import type { Peer } from '../helpers/protocol.js';

// ./expose and ./echoserver as pool members (docs/protocol.md §17), against a relay played
// line by line: the pool-aware relay is built on another branch.

const TOKEN = 'fedcba9876543210fedcba9876543210';
const TOKEN2 = 'aaaabbbbccccddddeeeeffff00001111';

function runProgram(program: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(path.join(ROOT, program), args, { timeout: 10_000, env: { ...process.env, ...NO_ENV_SECRET } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

async function poolFile(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pool-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return path.join(dir, 'pool.key');
}

/** An echo server on `port` (0: any), its connections destroyed with it. */
async function echoTarget(t: TestContext, port = 0): Promise<{ server: Server; port: number; stop: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const stop = async (): Promise<void> => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  t.after(() => stop().catch(() => {}));
  return { server, port: (server.address() as AddressInfo).port, stop };
}

/** ./expose as a pool member, registered with the scripted relay: the child, its control connection and its key. */
async function exposeMember(t: TestContext, relay: ScriptedRelay, targetPort: number, flags: string[], features = ALL_FEATURES): Promise<{ child: Child; ctl: Peer; key: string }> {
  const file = await poolFile(t);
  const child = start(t, path.join(ROOT, 'expose'), ['127.0.0.1', String(relay.controlPort), String(targetPort), '--pool-file', file, '--log-format', 'json', ...flags], NO_ENV_SECRET);
  const { peer, hello } = await relay.nextControl();
  const key = /\bpool=([0-9a-f]{32})\b/.exec(hello)?.[1];
  assert.ok(key !== undefined, `HELLO has pool=: ${hello}`);
  assert.match(hello, /\bfeat=\S*\bpool\b/);
  peer.send(relay.ok(key, features));
  return { child, ctl: peer, key };
}

const usageCases: [string, string[], RegExp][] = [
  [
    'echoserver',
    ['localhost', '8080', '--pool-file', 'p.key', '--resume-file', 'r.key'],
    /--pool-file and --resume-file cannot be used together: a pool's address belongs to the pool key, shared by every replica/,
  ],
  ['expose', ['localhost', '8080', '80', '--pool-file', 'p.key', '--resume-file', 'r.key'], /--pool-file and --resume-file cannot be used together/],
  ['expose', ['localhost', '8080', '80', '--check-interval', 'soon'], /--check-interval must be from 0 to 3600 seconds, got "soon"/],
  ['expose', ['localhost', '8080', '80', '--check-interval', '-1'], /--check-interval must be from 0 to 3600 seconds, got "-1"/],
  ['echoserver', ['localhost', '8080', '--pool-file', '/nonexistent-dir/pool.key'], /cannot create pool file \/nonexistent-dir\/pool.key: ENOENT/],
];

for (const [program, args, expected] of usageCases) {
  test(`pool usage: ${program} ${args.slice(2).join(' ')} is a one-line usage error, exit 2`, async () => {
    const { code, stderr, stdout } = await runProgram(program, args);
    assert.equal(code, 2);
    assert.equal(stdout, '');
    assert.match(stderr, expected);
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
  });
}

test('pool usage: --help of both programs documents --pool-file, and expose documents --check-interval', async () => {
  const expose = await runProgram('expose', ['--help']);
  assert.match(expose.stdout, /--pool-file/);
  assert.match(expose.stdout, /--check-interval/);
  const echo = await runProgram('echoserver', ['--help']);
  assert.match(echo.stdout, /--pool-file/);
  assert.doesNotMatch(echo.stdout, /--check-interval/);
});

test('pool member: a relay whose OK does not list pool makes ./expose exit 2 saying the relay is too old, without printing an address', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const target = await echoTarget(t);
  const { child, ctl } = await exposeMember(t, relay, target.port, [], PRE_POOL_FEATURES);
  const { code } = await within(child.exited, 10_000, 'expose to exit');
  assert.equal(code, 2);
  assert.deepEqual(child.stdout, []);
  assert.ok(
    child.stderr.some((line) => /^expose: the relay at 127\.0\.0\.1:\d+ is too old for pools .*--pool-file/.test(line)),
    child.stderr.join('\n'),
  );
  await ctl.endsWithin(5000);
});

test('pool member: ./expose sends HEALTH down when its target stops and HEALTH up when it is back; a CONNECT meanwhile is declined at once', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const target = await echoTarget(t);
  const { child, ctl } = await exposeMember(t, relay, target.port, ['--check-interval', '0.1']);
  await child.waitFor('stdout', /^established relay address: 127\.0\.0\.1:40000$/);
  await target.stop();
  assert.equal(await ctl.nextLine(5000), 'HEALTH down');
  ctl.send(`CONNECT ${TOKEN} 192.0.2.1 5000`);
  assert.equal(await ctl.nextLine(5000), `DECLINE ${TOKEN}`);
  assert.equal(relay.datas.all.length, 0, 'no data connection for a client declined while down');
  await echoTarget(t, target.port);
  assert.equal(await ctl.nextLine(5000), 'HEALTH up');
  assert.deepEqual(ctl.lines.slice(1), ['HEALTH down', `DECLINE ${TOKEN}`, 'HEALTH up'], 'one line per change, nothing else');
});

test('pool member: a CONNECT whose target connection is refused is answered DECLINE, never DATA; once the target is back the next is served', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const gone = await echoTarget(t);
  await gone.stop();
  const { child, ctl } = await exposeMember(t, relay, gone.port, ['--check-interval', '0']);
  await child.waitFor('stdout', /^established relay address: /);
  ctl.send(`CONNECT ${TOKEN} 192.0.2.1 5000`);
  assert.equal(await ctl.nextLine(5000), `DECLINE ${TOKEN}`);
  for (const data of relay.datas.all) {
    await data.endsWithin(5000);
    assert.equal(data.text(), '', 'a data connection opened meanwhile carries no token');
  }
  await echoTarget(t, gone.port);
  ctl.send(`CONNECT ${TOKEN2} 192.0.2.2 5001`);
  // The first data connection may be the declined client's, closed without a line.
  let data: Peer;
  let line: string | undefined;
  do {
    data = await relay.nextData();
    line = await data.nextLine().catch(() => undefined);
  } while (line === undefined);
  assert.equal(line, `DATA ${TOKEN2}`);
  data.send('CLIENT 192.0.2.2 5001 127.0.0.1 40000');
  data.socket.write('hello');
  assert.equal((await data.readBytes(5)).toString(), 'hello');
});

/** Registers, opens one tunnel through the member to its echo target, and checks it echoes. */
async function openTunnel(relay: ScriptedRelay, ctl: Peer): Promise<Peer> {
  ctl.send(`CONNECT ${TOKEN} 192.0.2.1 5000`);
  const data = await relay.nextData();
  assert.equal(await data.nextLine(), `DATA ${TOKEN}`);
  data.send('CLIENT 192.0.2.1 5000 127.0.0.1 40000');
  data.socket.write('ping');
  assert.equal((await data.readBytes(4)).toString(), 'ping');
  return data;
}

test('pool member, SIGTERM: DRAIN first, the open tunnel finishes undisturbed, then the control connection closes without LEAVE; exit 0', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const target = await echoTarget(t);
  const { child, ctl } = await exposeMember(t, relay, target.port, ['--check-interval', '0', '--drain-timeout', '20']);
  await child.waitFor('stdout', /^established relay address: /);
  const data = await openTunnel(relay, ctl);
  child.signal('SIGTERM');
  assert.equal(await ctl.nextLine(5000), 'DRAIN');
  // Still draining: the tunnel goes on, the control connection stays.
  data.socket.write('more');
  assert.equal((await data.readBytes(4)).toString(), 'more');
  assert.equal(ctl.ended, undefined, 'the control connection waits for the tunnel');
  data.socket.end();
  assert.equal(await data.endsWithin(5000), 'end', 'the tunnel ends with a FIN: finished, not cut');
  assert.equal(await ctl.endsWithin(5000), 'end');
  assert.deepEqual(ctl.lines.slice(1), ['DRAIN'], 'no LEAVE: the address stays reserved for the next deploy');
  assert.equal((await within(child.exited, 5000, 'expose to exit')).code, 0);
});

test('pool member, SIGTERM with --leave-on-exit: DRAIN, then LEAVE once the tunnels are done', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const target = await echoTarget(t);
  const { child, ctl } = await exposeMember(t, relay, target.port, ['--check-interval', '0', '--leave-on-exit']);
  await child.waitFor('stdout', /^established relay address: /);
  const data = await openTunnel(relay, ctl);
  child.signal('SIGTERM');
  assert.equal(await ctl.nextLine(5000), 'DRAIN');
  data.socket.end();
  assert.equal(await ctl.nextLine(5000), 'LEAVE');
  assert.equal((await within(child.exited, 5000, 'expose to exit')).code, 0);
});

test('pool member, SIGTERM: a tunnel still open at --drain-timeout is reset, never finished with a FIN, and only then the control connection closes', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const target = await echoTarget(t);
  const { child, ctl } = await exposeMember(t, relay, target.port, ['--check-interval', '0', '--drain-timeout', '0.5']);
  await child.waitFor('stdout', /^established relay address: /);
  const data = await openTunnel(relay, ctl);
  child.signal('SIGTERM');
  assert.equal(await ctl.nextLine(5000), 'DRAIN');
  assert.equal(await data.endsWithin(5000), 'reset');
  assert.equal(await ctl.endsWithin(5000), 'end');
  assert.deepEqual(ctl.lines.slice(1), ['DRAIN']);
  assert.equal((await within(child.exited, 5000, 'expose to exit')).code, 0);
});

test('pool member: ./echoserver with --pool-file registers with pool= and drains on SIGTERM', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const file = await poolFile(t);
  const child = start(t, path.join(ROOT, 'echoserver'), ['127.0.0.1', String(relay.controlPort), '--pool-file', file], NO_ENV_SECRET);
  const { peer, hello } = await relay.nextControl();
  const key = /\bpool=([0-9a-f]{32})\b/.exec(hello)?.[1];
  assert.ok(key !== undefined, hello);
  peer.send(relay.ok(key, ALL_FEATURES));
  await child.waitFor('stdout', /^established relay address: 127\.0\.0\.1:40000$/);
  child.signal('SIGTERM');
  assert.equal(await peer.nextLine(5000), 'DRAIN');
  assert.equal(await peer.endsWithin(5000), 'end');
  assert.deepEqual(peer.lines.slice(1), ['DRAIN']);
  assert.equal((await within(child.exited, 5000, 'echoserver to exit')).code, 0);
});

test('pool file: two replicas started at once with one new --pool-file both join with the one key it holds', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const file = await poolFile(t);
  for (let i = 0; i < 2; i++) start(t, path.join(ROOT, 'echoserver'), ['127.0.0.1', String(relay.controlPort), '--pool-file', file], NO_ENV_SECRET);
  const keys = [];
  for (let i = 0; i < 2; i++) keys.push(/\bpool=([0-9a-f]{32})\b/.exec((await relay.nextControl()).hello)?.[1]);
  assert.match(keys[0] ?? '', /^[0-9a-f]{32}$/);
  assert.equal(keys[1], keys[0]);
  assert.equal((await readFile(file, 'utf8')).trim(), keys[0]);
});
