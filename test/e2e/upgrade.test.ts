import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, copyFile, cp, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assertNewClientEchoes } from '../helpers/echo.js';
import { dial, portsFlag, readToEnd, within, eventually } from '../helpers/net.js';
import { longTunnel, refusalProbe, shortConnections } from '../helpers/load.js';
import { NO_ENV_SECRET, RELAY_WORKERS, ROOT, startRelay, startService, type RelayProcess, type ServiceProcess } from '../helpers/processes.js';
import { dialData, nextConnect, registerRaw } from '../helpers/protocol.js';
import { countLines, isRunning } from '../helpers/observe.js';

interface Setup {
  relay: RelayProcess;
  echo: ServiceProcess;
  pidFile: string;
}

async function relayAndEcho(t: TestContext, extra: string[] = [], launcher?: string): Promise<Setup> {
  const dir = await mkdtemp(path.join(tmpdir(), 'relay-upgrade-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const pidFile = path.join(dir, 'relay.pid');
  const relay = await startRelay(t, [...portsFlag(), '--pid-file', pidFile, '--drain-timeout', '30', ...extra], NO_ENV_SECRET, launcher === undefined ? undefined : path.dirname(launcher));
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  return { relay, echo, pidFile };
}

/*
 * These tests run against a relay of one worker, or of several (TEST_RELAY_WORKERS): an
 * upgrade then replaces each in turn, and what a test says of "the worker" is said of
 * the one that serves its service.
 */

/** The worker that registered the service on `publicPort` last (of several, the one serving it). */
function workerServing(relay: RelayProcess, publicPort: number): number {
  const line = relay.stderr.findLast((text) => new RegExp(`"publicPort":${publicPort},.*"msg":"service registered"`).test(text));
  const pid = line === undefined ? undefined : /"pid":(\d+)/.exec(line)?.[1];
  return pid === undefined ? relay.workerPid : Number(pid);
}

/** Resolves once every worker was replaced (SIGUSR2 sent after stderr line `from`), with each new and old worker pid. */
async function replaced(relay: RelayProcess, from: number): Promise<{ worker: number; oldWorker: number }[]> {
  const pairs: { worker: number; oldWorker: number }[] = [];
  let after = from;
  for (let i = 0; i < RELAY_WORKERS; i++) {
    const done = await relay.waitFor('stderr', /"worker":(\d+),"oldWorker":(\d+),"msg":"upgrade: new worker serving/, 20_000, after);
    pairs.push({ worker: Number(done[1]), oldWorker: Number(done[2]) });
    after = relay.stderr.indexOf(done.input!, after) + 1;
  }
  return pairs;
}

/** SIGUSR2 to the pid in the pid file; resolves with the new and old pids of the worker that served the echo service. */
async function upgrade(s: Setup): Promise<{ worker: number; oldWorker: number }> {
  const masterPid = Number(await readFile(s.pidFile, 'utf8'));
  assert.equal(masterPid, s.relay.pid, 'the pid file names the master');
  const serving = workerServing(s.relay, s.echo.publicPort);
  const from = s.relay.stderr.length;
  process.kill(masterPid, 'SIGUSR2');
  const pairs = await replaced(s.relay, from);
  return pairs.find((pair) => pair.oldWorker === serving) ?? pairs[0]!;
}

/** Half-close through the relay: the echo of everything, then the end of it. */
async function halfClose(t: TestContext, port: number): Promise<void> {
  const socket = await dial(t, port);
  const text = 'half-close after the upgrade\n'.repeat(100);
  socket.end(text);
  assert.equal((await readToEnd(socket)).toString(), text);
}

/**
 * 20 long tunnels exchanging lines every 100 ms, short connections at 50/s and a probe of
 * the control port, across an upgrade. Returns the short connections' outcome.
 */
async function upgradeUnderLoad(t: TestContext): Promise<{ ok: number; failed: string[]; longestMs: number }> {
  const s = await relayAndEcho(t);
  const tunnels = await Promise.all(Array.from({ length: 20 }, (_, i) => longTunnel(t, s.echo.publicPort, `tunnel ${i}`)));
  const short = shortConnections(s.echo.publicPort, 50);
  const control = refusalProbe(s.relay.port);
  await assertNewClientEchoes(t, s.echo.publicPort, 'before the upgrade\n', 10_000);

  const { worker, oldWorker } = await upgrade(s);
  assert.notEqual(worker, oldWorker);
  const again = await s.echo.waitFor('stdout', /^established relay address: .+:(\d+)$/, 10_000, 1);
  assert.equal(Number(again[1]), s.echo.publicPort, 'the service is back on the same public port');
  await halfClose(t, s.echo.publicPort);
  assert.ok(isRunning(oldWorker), 'the old worker left before its tunnels ended');
  for (const tunnel of tunnels) assert.equal(tunnel.cutReason(), undefined, 'a tunnel was cut by the upgrade');

  const outcome = await short.stop();
  await Promise.all(tunnels.map((tunnel) => tunnel.finish()));
  await s.relay.waitFor('stderr', new RegExp(`"oldWorker":${oldWorker},"code":0,.*"msg":"old worker exited"`), 10_000);
  await eventually(() => !isRunning(oldWorker), 5000, 'the old worker to be gone');
  assert.equal(control.stop(), 0, 'the control port refused a connection during the upgrade');
  assert.equal(Number(await readFile(s.pidFile, 'utf8')), s.relay.pid, 'the pid file still names the master');
  assert.ok(isRunning(s.relay.pid), 'the master survives the upgrade');

  const from = s.relay.stderr.length;
  s.relay.signal('SIGTERM');
  const { code } = await within(s.relay.exited, 10_000, 'the relay to stop').catch((err: Error) => {
    throw new Error(`${err.message}; its log:\n${s.relay.stderr.slice(from - 8).join('\n')}`);
  });
  assert.equal(code, 0);
  assert.equal(existsSync(s.pidFile), false, 'the pid file is removed at exit');
  t.diagnostic(`short connections: ${outcome.ok} ok, ${outcome.failed.length} failed, longest connect-to-echo ${outcome.longestMs.toFixed(0)} ms ${outcome.failed.slice(0, 3).join(' | ')}`);
  return outcome;
}

test('upgrade under load: SIGUSR2 moves the relay to a new worker; 20 long tunnels and 50 short connections a second see no failure, every byte comes back, the control port never closes, the old worker drains and exits', async (t) => {
  const { failed } = await upgradeUnderLoad(t);
  assert.deepEqual(failed, []);
});

test('upgrade: a second SIGUSR2 during a handover is ignored with a log line', async (t) => {
  const s = await relayAndEcho(t);
  const from = s.relay.stderr.length;
  process.kill(s.relay.pid, 'SIGUSR2');
  await s.relay.waitFor('stderr', /"msg":"upgrade: starting a new worker/, 5000, from);
  process.kill(s.relay.pid, 'SIGUSR2');
  await s.relay.waitFor('stderr', /"msg":"SIGUSR2 ignored: an upgrade is already in progress"/, 5000, from);
  await replaced(s.relay, from);
  await s.relay.waitFor('stderr', /"msg":"old worker exited"/, 10_000, from);
  assert.equal(countLines(s.relay.stderr.slice(from), /"msg":"upgrade: starting a new worker/), RELAY_WORKERS, 'one upgrade: each worker replaced once');
  await s.echo.waitFor('stdout', /^established relay address:/, 10_000, 1);
  await assertNewClientEchoes(t, s.echo.publicPort, 'after one upgrade\n', 10_000);
});

test('upgrade: a new worker that cannot start (broken build on disk) leaves the old one serving, and the master says why', async (t) => {
  const copy = await mkdtemp(path.join(tmpdir(), 'relay-copy-'));
  t.after(() => rm(copy, { recursive: true, force: true }));
  await cp(path.join(ROOT, 'dist'), path.join(copy, 'dist'), { recursive: true });
  await copyFile(path.join(ROOT, 'relay'), path.join(copy, 'relay'));
  await copyFile(path.join(ROOT, 'package.json'), path.join(copy, 'package.json'));
  await symlink(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'));
  const s = await relayAndEcho(t, [], path.join(copy, 'relay'));
  const tunnel = await longTunnel(t, s.echo.publicPort, 'open across the failed upgrade');

  const relayJs = path.join(copy, 'dist', 'src', 'relay', 'relay.js');
  const good = await readFile(relayJs);
  await appendFile(relayJs, '\nthis is not JavaScript (\n');
  const from = s.relay.stderr.length;
  process.kill(s.relay.pid, 'SIGUSR2');
  const failed = await s.relay.waitFor('stderr', /"reason":"([^"]+)".*"msg":"upgrade failed: the old worker keeps serving"/, 20_000, from);
  // Of several workers, each one's new worker fails in turn: all of them before the build is fixed.
  await eventually(() => countLines(s.relay.stderr.slice(from), /"msg":"upgrade failed: the old worker keeps serving"/) === RELAY_WORKERS, 20_000, 'every new worker to fail');
  t.diagnostic(`master: ${failed[1]}`);
  assert.match(failed[1]!, /exited \(1\) before it was ready/);
  assert.ok(
    s.relay.stderr.slice(from).some((line) => /SyntaxError/.test(line)),
    "the new worker's error is on stderr",
  );
  const serving = workerServing(s.relay, s.echo.publicPort);
  assert.ok(isRunning(serving), 'the old worker is still running');
  await assertNewClientEchoes(t, s.echo.publicPort, 'still served by the old worker\n', 10_000);
  assert.equal(s.echo.stdout.length, 1, 'the service never had to register again');

  await writeFile(relayJs, good);
  const { oldWorker } = await upgrade(s);
  assert.equal(oldWorker, serving, 'the fixed build replaces the worker that kept serving');
  await s.echo.waitFor('stdout', /^established relay address:/, 10_000, 1);
  await tunnel.finish();
});

test('master: one Ctrl-C at a terminal (SIGINT to the whole process group) drains and exits 0, as one signal', async (t) => {
  const s = await relayAndEcho(t);
  await assertNewClientEchoes(t, s.echo.publicPort, 'hello\n', 10_000);
  process.kill(-s.relay.pid, 'SIGINT');
  const { code } = await within(s.relay.exited, 5000, 'the relay to stop');
  assert.equal(code, 0);
  assert.equal(countLines(s.relay.stderr, /second signal/), 0, 'one Ctrl-C was taken as two');
  await eventually(() => !isRunning(s.relay.workerPid), 3000, 'the worker to be gone');
});

test('master: a worker that dies is replaced on the same ports; a master killed with -9 takes its worker with it', async (t) => {
  const s = await relayAndEcho(t);
  process.kill(workerServing(s.relay, s.echo.publicPort), 'SIGKILL');
  const restarted = await s.relay.waitFor('stderr', /"pid":(\d+).*"controlPort":(\d+),.*"msg":"relay listening"/, 10_000, s.relay.stderr.length);
  assert.equal(Number(restarted[2]), s.relay.port, 'the replacement listens on the same control port');
  assert.ok(countLines(s.relay.stderr, /"msg":"worker died unexpectedly/) === 1, 'the master logged the death');
  await s.echo.waitFor('stdout', /^established relay address:/, 10_000, 1);
  await assertNewClientEchoes(t, s.echo.publicPort, 'served by the replacement\n', 10_000);

  const worker = Number(restarted[1]);
  s.relay.signal('SIGKILL');
  await eventually(() => !isRunning(worker), 5000, 'the worker to exit with its master');
});

test('upgrade: a service that lists no features gets SHUTDOWN, not REJOIN, and registers again with the new worker on its port; a client arriving meanwhile is held for it', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'relay-upgrade-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const pidFile = path.join(dir, 'relay.pid');
  const relay = await startRelay(t, [...portsFlag(), '--pid-file', pidFile], NO_ENV_SECRET);
  // A service written against the protocol before feature negotiation: no feat=.
  const old = await registerRaw(t, relay.port);
  const { publicPort, resume } = old.registration;
  const from = relay.stderr.length;
  process.kill(relay.pid, 'SIGUSR2');
  await replaced(relay, from);
  assert.equal(await old.control.nextLine(5000), 'SHUTDOWN', 'a featless service is sent SHUTDOWN');
  assert.ok(!old.control.lines.includes('REJOIN'), 'a featless service never sees REJOIN');

  const client = await dial(t, publicPort);
  client.write('held across the upgrade\n');
  const back = await registerRaw(t, relay.port, { hello: `HELLO 1 host=127.0.0.1 port=${publicPort} resume=${resume}` });
  assert.equal(back.registration.publicPort, publicPort, 'the same port from the new worker');
  const { token } = await nextConnect(back.control);
  const data = await dialData(t, back.registration.dataPort, `DATA ${token}`);
  assert.match(data.reply, /^CLIENT /);
  assert.equal((await data.peer.readBytes(24, 5000)).toString(), 'held across the upgrade\n');
});
