import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Socket } from 'node:net';
import { assertEchoes } from '../helpers/echo.js';
import { dial, freeBlock, howItEnds, portsFlag, readAtLeast, within, eventually } from '../helpers/net.js';
import { NO_ENV_SECRET, ROOT, start, startRelay, startService, type Child, type ServiceProcess } from '../helpers/processes.js';
import { registerRaw } from '../helpers/protocol.js';
import { connectionRefused, isRunning } from '../helpers/observe.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-continuity-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function echoserver(t: TestContext, relayPort: number, args: string[] = []): Promise<ServiceProcess> {
  return startService(t, 'echoserver', ['127.0.0.1', String(relayPort), ...args], NO_ENV_SECRET);
}

/** Sends a line on each socket and resolves with the longest wait for its echo, in ms. */
async function allEchoed(clients: { socket: Socket; line: string; sentAt: number }[], ms: number): Promise<number> {
  let longest = 0;
  await Promise.all(
    clients.map(async ({ socket, line, sentAt }) => {
      const echoed = await readAtLeast(socket, line.length, ms);
      assert.equal(echoed.toString(), line);
      longest = Math.max(longest, performance.now() - sentAt);
    }),
  );
  return longest;
}

test('service restart with --resume-file: 20 clients arriving while it is down are held and answered by the restarted process, on the same port', async (t) => {
  const dir = tempDir(t);
  const resumeFile = path.join(dir, 'echo.key');
  const relay = await startRelay(t, [...portsFlag(), '--hold-timeout', '20'], NO_ENV_SECRET);
  const first = await echoserver(t, relay.port, ['--resume-file', resumeFile]);
  assert.equal(statSync(resumeFile).mode & 0o777, 0o600, 'the resume key is private');

  const from = relay.stderr.length;
  first.signal('SIGKILL');
  await relay.waitFor('stderr', /"msg":"service left"/, 5000, from);
  const clients = await Promise.all(
    Array.from({ length: 20 }, async (_, i) => {
      const socket = await dial(t, first.publicPort);
      const line = `client ${i} sent this while the service was down\n`;
      socket.write(line);
      return { socket, line, sentAt: performance.now() };
    }),
  );
  const second = await echoserver(t, relay.port, ['--resume-file', resumeFile]);
  assert.equal(second.publicPort, first.publicPort, 'the resume file brought the same port back');
  const longest = await allEchoed(clients, 10_000);
  t.diagnostic(`longest wait of a held client through the restart: ${longest.toFixed(0)} ms`);
});

test('a client held past --hold-timeout is reset, not left hanging, and counted', async (t) => {
  const dir = tempDir(t);
  const relay = await startRelay(t, [...portsFlag(), '--hold-timeout', '1', '--metrics', '0'], NO_ENV_SECRET);
  const service = await echoserver(t, relay.port, ['--resume-file', path.join(dir, 'key')]);
  const from = relay.stderr.length;
  service.signal('SIGKILL');
  await relay.waitFor('stderr', /"msg":"service left"/, 5000, from);
  const client = await dial(t, service.publicPort);
  const started = performance.now();
  assert.equal(await howItEnds(client, 5000), 'reset');
  const waited = performance.now() - started;
  assert.ok(waited >= 900 && waited < 3000, `reset after ${waited.toFixed(0)} ms with --hold-timeout 1`);
  await relay.waitFor('stderr', /"reason":"hold-timeout".*held client reset/, 2000, from);
});

test('LEAVE: a service without a resume file stopped with SIGTERM frees its port at once; with one, its restart gets the clients held meanwhile', async (t) => {
  const dir = tempDir(t);
  const relay = await startRelay(t, portsFlag(), NO_ENV_SECRET);
  const leaving = await echoserver(t, relay.port);
  leaving.signal('SIGTERM');
  await within(leaving.exited, 5000, 'the echoserver to exit');
  // At once, give or take the IPC to the master, which holds a copy of the listening socket.
  await eventually(() => connectionRefused(leaving.publicPort), 3000, 'the port of a service that left to close');

  const resumeFile = path.join(dir, 'key');
  const deploy = await echoserver(t, relay.port, ['--resume-file', resumeFile]);
  deploy.signal('SIGTERM');
  await within(deploy.exited, 5000, 'the echoserver to exit');
  const socket = await dial(t, deploy.publicPort);
  socket.write('held through a deploy\n');
  const sentAt = performance.now();
  const again = await echoserver(t, relay.port, ['--resume-file', resumeFile]);
  assert.equal(again.publicPort, deploy.publicPort);
  await allEchoed([{ socket, line: 'held through a deploy\n', sentAt }], 5000);
  socket.destroy(); // else the next SIGTERM waits out its drain for this client

  // --leave-on-exit: a final stop even with a resume file.
  again.signal('SIGTERM');
  await within(again.exited, 5000, 'the echoserver to exit');
  const last = await echoserver(t, relay.port, ['--resume-file', resumeFile, '--leave-on-exit']);
  last.signal('SIGTERM');
  await within(last.exited, 5000, 'the echoserver to exit');
  await eventually(() => connectionRefused(last.publicPort), 3000, '--leave-on-exit to free the port');
});

test('two processes sharing one resume file: the second wins, the first exits 1 with "superseded"', async (t) => {
  const dir = tempDir(t);
  const resumeFile = path.join(dir, 'key');
  const relay = await startRelay(t, portsFlag(), NO_ENV_SECRET);
  const first = await echoserver(t, relay.port, ['--resume-file', resumeFile]);
  const second = await echoserver(t, relay.port, ['--resume-file', resumeFile]);
  assert.equal(second.publicPort, first.publicPort);
  const { code } = await within(first.exited, 5000, 'the superseded echoserver to exit');
  assert.equal(code, 1);
  assert.match(first.stderr.join('\n'), /superseded/);
  assert.ok(isRunning(second.pid));
  await assertEchoes(await dial(t, second.publicPort), 'to the winner\n');
});

test('./expose with --resume-file keeps its port across a restart', async (t) => {
  const dir = tempDir(t);
  const relay = await startRelay(t, portsFlag(), NO_ENV_SECRET);
  const echo = await echoserver(t, relay.port);
  const args = ['127.0.0.1', String(relay.port), String(echo.publicPort), '--resume-file', path.join(dir, 'expose.key')];
  const first = await startService(t, 'expose', args, NO_ENV_SECRET);
  first.signal('SIGKILL');
  await within(first.exited, 5000, 'expose to die');
  const client = await dial(t, first.publicPort);
  client.write('through a restarted expose\n');
  const second = await startService(t, 'expose', args, NO_ENV_SECRET);
  assert.equal(second.publicPort, first.publicPort);
  assert.equal((await readAtLeast(client, 27, 5000)).toString(), 'through a restarted expose\n');
});

test('a malformed --resume-file is a usage error naming the file', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'key');
  writeFileSync(file, 'not a key\n');
  const service = start(t, path.join(ROOT, 'echoserver'), ['127.0.0.1', '1', '--resume-file', file], NO_ENV_SECRET);
  const { code } = await within(service.exited, 5000, 'echoserver to exit');
  assert.equal(code, 2);
  assert.match(service.stderr.join('\n'), /resume file .*key does not hold a resume key/);
});

test('reservations never lock the range: 30 connect-and-close registrations on 5 ports, then a real service still gets a port', async (t) => {
  const block = await freeBlock(5);
  const relay = await startRelay(t, ['--ports', `${block.first}-${block.last}`, '--max-services', '1', '--resume-grace', '600'], NO_ENV_SECRET);
  const departures = (): number => relay.stderr.filter((line) => /"msg":"service left"/.test(line)).length;
  for (let i = 0; i < 30; i++) {
    const { control } = await registerRaw(t, relay.port);
    control.socket.destroy();
    // --max-services 1: the next registration may only come once this one is gone.
    await eventually(() => departures() > i, 5000, 'the relay to see it leave');
  }
  const service = await echoserver(t, relay.port);
  assert.ok(service.publicPort >= block.first && service.publicPort <= block.last);
  assert.ok(
    relay.stderr.some((line) => /reservation released early/.test(line)),
    'the early release is logged',
  );
});

/** ./relay on a fixed control port with --state, so a restart is the same relay to its services. */
async function stateRelay(t: TestContext, port: number, args: string[]): Promise<Child> {
  const relay = start(t, path.join(ROOT, 'relay'), [String(port), ...args], NO_ENV_SECRET);
  await relay.waitFor('stderr', /"msg":"relay listening"/, 10_000);
  return relay;
}

test('relay crash with --state: after kill -9 and a restart, five services come back on their own ports and a stranger asking for one gets another', async (t) => {
  const dir = tempDir(t);
  const state = path.join(dir, 'leases.json');
  const block = await freeBlock(20);
  const control = block.last + 1;
  const args = ['--ports', `${block.first}-${block.last}`, '--state', state];
  const relay = await stateRelay(t, control, args);
  const services = await Promise.all(Array.from({ length: 5 }, (_, i) => echoserver(t, control, ['--resume-file', path.join(dir, `s${i}.key`)])));
  const ports = services.map((service) => service.publicPort).sort();
  const onDisk = readFileSync(state, 'utf8');
  for (let i = 0; i < 5; i++) assert.doesNotMatch(onDisk, new RegExp(readFileSync(path.join(dir, `s${i}.key`), 'utf8').trim()), 'no resume key on disk');

  relay.signal('SIGKILL');
  await within(relay.exited, 5000, 'the relay to die');
  const restarted = await stateRelay(t, control, args);
  assert.match(restarted.stderr.join('\n'), /"leases":5/);
  const stranger = await registerRaw(t, control, { hello: `HELLO 1 host=127.0.0.1 port=${ports[0]}` });
  assert.ok(!ports.includes(stranger.registration.publicPort), `a stranger got port ${stranger.registration.publicPort}, one of ${ports.join(',')}`);

  await Promise.all(services.map((service) => service.waitFor('stdout', /^established relay address: /, 20_000, 1)));
  for (const service of services) {
    assert.equal(service.stdout[1], service.stdout[0], 'the same address after the relay restart');
    await assertEchoes(await dial(t, service.publicPort), 'after the crash\n');
  }
});

test('a missing, empty, corrupt or unwritable state file: the relay starts clean with a warning and serves', async (t) => {
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'empty.json'), '');
  writeFileSync(path.join(dir, 'corrupt.json'), '{"version":1,"leases":[{"key":');
  writeFileSync(path.join(dir, 'file'), '');
  const cases: [string, RegExp][] = [
    [path.join(dir, 'missing.json'), /state file does not exist yet/],
    [path.join(dir, 'empty.json'), /state file is empty or corrupt/],
    [path.join(dir, 'corrupt.json'), /state file is empty or corrupt/],
    [path.join(dir, 'file', 'leases.json'), /state file cannot be read/],
  ];
  for (const [state, warning] of cases) {
    const relay = await startRelay(t, [...portsFlag(), '--state', state], NO_ENV_SECRET);
    assert.match(relay.stderr.join('\n'), warning);
    const service = await echoserver(t, relay.port);
    await assertEchoes(await dial(t, service.publicPort), 'served\n');
    if (state.includes(`file${path.sep}`)) await relay.waitFor('stderr', /cannot write the state file/, 5000);
    relay.signal('SIGKILL');
    service.signal('SIGKILL');
  }
});
