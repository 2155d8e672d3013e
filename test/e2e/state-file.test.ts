import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eventually, freeBlock, portsFlag, within } from '../helpers/net.js';
import { isRunning } from '../helpers/observe.js';
import { leaseKey } from '../../src/leases/lease-store.js';
import { NO_ENV_SECRET, ROOT, start, startRelay, startService } from '../helpers/processes.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-state-e2e-'));
  // The relays are killed only after this hook: one may be writing its state file
  // here still. rm's retries (unlike rmSync's) start the whole removal again.
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 10 }));
  return dir;
}

/** ./relay that must refuse to start: its exit code and the stderr lines that are not JSON log records. */
async function refusedStart(t: TestContext, args: string[]): Promise<{ code: number | null; lines: string[] }> {
  const relay = start(t, path.join(ROOT, 'relay'), ['0', ...portsFlag(), ...args], NO_ENV_SECRET);
  const { code } = await within(relay.exited, 15_000, 'the relay to refuse to start');
  return { code, lines: relay.stderr.filter((line) => !line.startsWith('{')) };
}

test('--state in a directory anyone can write without the sticky bit: one line naming the directory, exit 2; a sticky one is accepted', async (t) => {
  const dir = tempDir(t);
  chmodSync(dir, 0o777);
  const state = path.join(dir, 'leases.json');
  const { code, lines } = await refusedStart(t, ['--state', state]);
  assert.equal(code, 2);
  assert.deepEqual(lines, [
    `relay: --state ${state}: its directory ${dir} is writable by others (mode 0777) without the sticky bit, so anyone could replace the leases: chmod go-w ${dir}, or use another directory`,
  ]);

  chmodSync(dir, 0o1777);
  const relay = await startRelay(t, [...portsFlag(), '--state', state], NO_ENV_SECRET);
  await relay.waitFor('stderr', /"msg":"relay listening"/);
});

test('a state file with one bad entry: the relay keeps the valid leases, logs what it dropped, and keeps the file as FILE.corrupt-<time>', async (t) => {
  const dir = tempDir(t);
  const state = path.join(dir, 'leases.json');
  const block = await freeBlock(20);
  const key = leaseKey('0123456789abcdef0123456789abcdef');
  const text = JSON.stringify({
    version: 1,
    leases: [
      { key, port: block.first, until: null },
      { key: 'not a key', port: block.first + 1, until: null },
    ],
  });
  writeFileSync(state, text);
  const relay = await startRelay(t, ['--ports', `${block.first}-${block.last}`, '--state', state], NO_ENV_SECRET);
  await relay.waitFor('stderr', /"dropped":1,"reasons":\{"bad key":1\},"kept":1,"msg":"state file has invalid leases/);
  await relay.waitFor('stderr', /"leases":1,.*"msg":"leases loaded"/);
  const kept = readdirSync(dir).filter((name) => /^leases\.json\.corrupt-\d{4}-\d\d-\d\dT\d{6}\.\d{3}Z$/.test(name));
  assert.equal(kept.length, 1, `kept aside: ${readdirSync(dir).join(', ')}`);
  assert.equal(readFileSync(path.join(dir, kept[0]!), 'utf8'), text);
  const rewritten = JSON.parse(readFileSync(state, 'utf8')) as { leases: { port: number }[] };
  assert.deepEqual(
    rewritten.leases.map((lease) => lease.port),
    [block.first],
    'the valid lease is written back',
  );
  assert.ok(!relay.stderr.join('\n').includes(key), 'no lease key in the log');
});

test('the first start with --state: "state file does not exist yet" is an info line, not a warning', async (t) => {
  const state = path.join(tempDir(t), 'leases.json');
  const relay = await startRelay(t, [...portsFlag(), '--state', state], NO_ENV_SECRET);
  await relay.waitFor('stderr', /"level":30,.*"msg":"state file does not exist yet: starting with no leases"/);
  assert.ok(!relay.stderr.some((line) => /"level":40/.test(line)), 'no warning');
});

test('two relays on one state file: the second refuses to start in one line naming the file and the pid of the first, exit 2', async (t) => {
  const state = path.join(tempDir(t), 'leases.json');
  const first = await startRelay(t, [...portsFlag(), '--state', state], NO_ENV_SECRET);
  assert.ok(readFileSync(`${state}.lock`, 'utf8').startsWith(`${first.pid}\n${first.workerPid}\n`), 'the lock names the relay (its master) and its worker');
  const { code, lines } = await refusedStart(t, ['--state', state]);
  assert.equal(code, 2);
  assert.deepEqual(lines, [`relay: --state ${state} is in use by another relay (pid ${first.pid}, in ${state}.lock): stop it, or give each relay its own --state file`]);

  // A crash leaves the lock: the next relay takes it over, with a line saying so.
  process.kill(-first.pid, 'SIGKILL');
  await within(first.exited, 5000, 'the first relay to die');
  await eventually(() => !isRunning(first.workerPid), 5000, 'its worker to die');
  const next = await startRelay(t, [...portsFlag(), '--state', state], NO_ENV_SECRET);
  await next.waitFor('stderr', new RegExp(`"pid":${first.pid},"msg":"taking over the lock of a relay that is no longer running"`));
  assert.ok(readFileSync(`${state}.lock`, 'utf8').startsWith(`${next.pid}\n${next.workerPid}\n`));
});

test('an upgrade (SIGUSR2) keeps the state file lock with the relay; a clean stop removes it', async (t) => {
  const state = path.join(tempDir(t), 'leases.json');
  const relay = await startRelay(t, [...portsFlag(), '--state', state], NO_ENV_SECRET);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  process.kill(relay.pid, 'SIGUSR2');
  const done = await relay.waitFor('stderr', /"worker":(\d+),"oldWorker":(\d+),"msg":"upgrade: new worker serving/, 20_000);
  const worker = Number(done[1]);
  await echo.waitFor('stdout', /^established relay address: /, 10_000, 1);
  await relay.waitFor('stderr', /"msg":"old worker exited"/, 20_000);
  assert.ok(readFileSync(`${state}.lock`, 'utf8').startsWith(`${relay.pid}\n${worker}\n`), 'the new worker holds the lock; the old one left it there');
  assert.ok(!relay.stderr.some((line) => /taking over the lock/.test(line)), 'no takeover within one relay');
  const second = await refusedStart(t, ['--state', state]);
  assert.equal(second.code, 2, 'after the upgrade the file is still the relay’s');

  relay.signal('SIGTERM');
  assert.equal((await within(relay.exited, 15_000, 'the relay to stop')).code, 0);
  assert.equal(existsSync(`${state}.lock`), false, 'a clean stop leaves no lock');
  assert.equal(existsSync(state), true, 'but keeps the leases');
  const next = await startRelay(t, [...portsFlag(), '--state', state], NO_ENV_SECRET);
  assert.ok(!next.stderr.some((line) => /taking over the lock/.test(line)));
});
