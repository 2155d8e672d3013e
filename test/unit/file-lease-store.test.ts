import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { FileLeaseStore } from '../../src/leases/file-lease-store.js';
import { leaseKey, type LeaseRecord } from '../../src/leases/lease-store.js';
import { temporaryBeside, writeNewFile } from '../../src/leases/private-file.js';
import { UsageError } from '../../src/errors.js';
import { ManualClock } from '../helpers/clock.js';
import { eventually } from '../helpers/net.js';

const KEY_A = leaseKey('0123456789abcdef0123456789abcdef');
const KEY_B = leaseKey('fedcba9876543210fedcba9876543210');
const GRACE_MS = 60_000;

function setUp(t: { after: (fn: () => void) => void }) {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-state-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logged: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
      done();
    },
  });
  const clock = new ManualClock();
  const errors: string[] = [];
  const file = path.join(dir, 'leases.json');
  const store = new FileLeaseStore({ file, graceMs: GRACE_MS, log: pino(sink), clock, onWriteError: (err) => errors.push(err.code ?? '') });
  return { dir, file, store, clock, logged, errors };
}

test('leases written by one store are read back by the next; live ones get the whole grace again', async (t) => {
  const { file, store, clock } = setUp(t);
  const reservedUntil = clock.now() + 30_000;
  const leases: LeaseRecord[] = [
    { key: KEY_A, port: 9001, until: null },
    { key: KEY_B, port: 9002, until: reservedUntil },
  ];
  await store.save(() => leases);
  assert.equal(statSync(file).mode & 0o777, 0o600, 'the state file is private');
  assert.doesNotMatch(readFileSync(file, 'utf8'), /0123456789abcdef0123456789abcdef/, 'no resume key is stored');

  clock.advance(10_000); // "the relay was down for 10 s"
  const reloaded = await new FileLeaseStore({ file, graceMs: GRACE_MS, log: pino({ enabled: false }), clock }).load();
  assert.deepEqual(reloaded, [
    { key: KEY_A, port: 9001, until: clock.now() + GRACE_MS },
    { key: KEY_B, port: 9002, until: reservedUntil },
  ]);
});

test('reservations that ran out while the relay was down are dropped at load', async (t) => {
  const { file, store, clock } = setUp(t);
  await store.save(() => [{ key: KEY_B, port: 9002, until: clock.now() + 1000 }]);
  clock.advance(1000);
  assert.deepEqual(await new FileLeaseStore({ file, graceMs: GRACE_MS, log: pino({ enabled: false }), clock }).load(), []);
});

test('a reservation far in the future (a file from a clock that ran ahead) lasts at most one grace from the load', async (t) => {
  const { file, store, clock } = setUp(t);
  await store.save(() => [{ key: KEY_B, port: 9002, until: clock.now() + 100 * 365 * 86_400_000 }]);
  const loaded = await new FileLeaseStore({ file, graceMs: GRACE_MS, log: pino({ enabled: false }), clock }).load();
  assert.deepEqual(loaded, [{ key: KEY_B, port: 9002, until: clock.now() + GRACE_MS }]);
});

test('a missing state file is the normal first start: one info line, no warning', async (t) => {
  const { store, logged } = setUp(t);
  assert.deepEqual(await store.load(), []);
  const line = logged.find((record) => /state file does not exist yet/.test(record.msg));
  assert.equal(line?.level, 30, 'info, not a warning');
  assert.equal(logged.filter((record) => record.level >= 40).length, 0);
});

test('an empty or corrupt state file means no leases and one warning, never a throw; the file is kept as FILE.corrupt-<time>', async (t) => {
  const { dir, file, store, logged, clock } = setUp(t);
  const texts = ['', '{', '[]', '{"version":1}', '{"version":2,"leases":[]}', 'null'];
  for (const text of texts) {
    writeFileSync(file, text);
    assert.deepEqual(await store.load(), [], `read ${JSON.stringify(text)}`);
    const keptAs = `leases.json.corrupt-${new Date(clock.now()).toISOString().replace(/:/g, '')}`;
    assert.equal(readFileSync(path.join(dir, keptAs), 'utf8'), text, 'the corrupt file is kept, as it was');
    assert.equal(readFileSync(file, 'utf8'), text, 'a copy: the file stays until a write replaces it');
    clock.advance(1000);
  }
  const warnings = logged.filter((line) => line.level === 40);
  assert.equal(warnings.length, texts.length);
  for (const warning of warnings) assert.match(warning.msg, /state file is empty or corrupt/);
  assert.match(JSON.stringify(warnings[0]), /"keptAs":".*leases\.json\.corrupt-2023-11-14T221320\.000Z"/);
});

test('one bad entry costs only itself: the valid leases are kept, the dropped ones counted by reason (never a key), the file kept aside', async (t) => {
  const { dir, file, store, logged, clock } = setUp(t);
  const KEY_C = leaseKey('c'.repeat(32));
  const leases = [
    { key: KEY_A, port: 9001, until: null },
    { key: 'short', port: 9002, until: null },
    { key: KEY_B, port: 0, until: null },
    { key: KEY_B, port: 9001, until: null },
    { key: KEY_A, port: 9004, until: null },
    { key: KEY_B, port: 9005, until: 'later' },
    { key: KEY_B, port: 9006, until: null, tenant: 'no spaces allowed' },
    42,
    { key: KEY_B, port: 9007, until: clock.now() + 30_000 },
    { key: KEY_C, port: 9008, until: null, tenant: 'alice' },
  ];
  const text = JSON.stringify({ version: 1, leases });
  writeFileSync(file, text);
  assert.deepEqual(await store.load(), [
    { key: KEY_A, port: 9001, until: clock.now() + GRACE_MS },
    { key: KEY_B, port: 9007, until: clock.now() + 30_000 },
    { key: KEY_C, port: 9008, until: clock.now() + GRACE_MS, tenant: 'alice' },
  ]);
  const warning = logged.find((line) => /invalid leases/.test(line.msg)) as unknown as Record<string, unknown>;
  assert.equal(warning['level'], 40);
  assert.equal(warning['dropped'], 7);
  assert.equal(warning['kept'], 3);
  assert.deepEqual(warning['reasons'], { 'bad key': 1, 'bad port': 1, 'duplicate port': 1, 'duplicate key': 1, 'bad until': 1, 'bad tenant': 1, 'not an object': 1 });
  for (const line of logged) for (const key of [KEY_A, KEY_B, KEY_C]) assert.doesNotMatch(JSON.stringify(line), new RegExp(key), 'no lease key in the log');
  const kept = readdirSync(dir).filter((name) => name.startsWith('leases.json.corrupt-'));
  assert.equal(kept.length, 1);
  assert.equal(readFileSync(path.join(dir, kept[0]!), 'utf8'), text);
});

test('a partly invalid state file is copied aside, not moved: until a save replaces it, the file with its valid leases stays (a crash or a full disk loses nothing)', async (t) => {
  const { dir, file, store } = setUp(t);
  const text = JSON.stringify({ version: 1, leases: [{ key: KEY_A, port: 9001, until: null }, 42] });
  writeFileSync(file, text);
  const loaded = await store.load();
  assert.equal(readFileSync(file, 'utf8'), text, 'the file is still there before any save');
  const kept = readdirSync(dir).filter((name) => name.startsWith('leases.json.corrupt-'));
  assert.equal(kept.length, 1);
  assert.equal(readFileSync(path.join(dir, kept[0]!), 'utf8'), text);
  await store.save(() => loaded);
  assert.deepEqual(
    (JSON.parse(readFileSync(file, 'utf8')) as { leases: LeaseRecord[] }).leases.map((lease) => lease.port),
    [9001],
  );
});

test('an unreadable state file is kept aside before the first write replaces it', { skip: process.getuid?.() === 0 && 'root reads any file' }, async (t) => {
  const { dir, file, store, logged } = setUp(t);
  writeFileSync(file, 'secret leases');
  chmodSync(file, 0o000);
  assert.deepEqual(await store.load(), []);
  assert.ok(logged.some((line) => /state file cannot be read \(EACCES\)/.test(line.msg)));
  await store.save(() => []);
  assert.equal(readdirSync(dir).filter((name) => name.startsWith('leases.json.corrupt-')).length, 1);
});

test('saves made while a write is in flight share the next write, and each resolves only once it is on disk', async (t) => {
  const { file, store } = setUp(t);
  let current: LeaseRecord[] = [{ key: KEY_A, port: 9001, until: null }];
  const first = store.save(() => current);
  current = [...current, { key: KEY_B, port: 9002, until: null }];
  const second = store.save(() => current);
  const third = store.save(() => current);
  await first;
  await Promise.all([second, third]);
  const onDisk = JSON.parse(readFileSync(file, 'utf8')) as { leases: LeaseRecord[] };
  assert.deepEqual(
    onDisk.leases.map((lease) => lease.port),
    [9001, 9002],
  );
  assert.deepEqual(readdirSync(path.dirname(file)), ['leases.json'], 'no temporary file is left behind');
});

test('an unwritable state file: saves still resolve (the relay keeps serving), failures are counted, warnings rate-limited', async (t) => {
  const { dir, clock, logged } = setUp(t);
  // A path under a regular file cannot be written by anyone, root included.
  writeFileSync(path.join(dir, 'not-a-dir'), '');
  const errors: string[] = [];
  const log = pino(new Writable({ write: (chunk: Buffer, _e, done) => (logged.push(JSON.parse(chunk.toString()) as { level: number; msg: string }), done()) }));
  const store = new FileLeaseStore({ file: path.join(dir, 'not-a-dir', 'leases.json'), graceMs: GRACE_MS, log, clock, onWriteError: (err) => errors.push(err.code ?? '') });
  for (let i = 0; i < 3; i++) await store.save(() => [{ key: KEY_A, port: 9001, until: null }]);
  assert.deepEqual(errors, ['ENOTDIR', 'ENOTDIR', 'ENOTDIR']);
  assert.equal(logged.filter((line) => /cannot write the state file/.test(line.msg)).length, 1, 'one warning per interval');
  clock.advance(10_000);
  await store.save(() => []);
  assert.equal(logged.filter((line) => /cannot write the state file/.test(line.msg)).length, 2);
});

test('while paused (a successor is taking over) nothing is written; resume writes the current leases', async (t) => {
  const { file, store } = setUp(t);
  await store.save(() => [{ key: KEY_A, port: 9001, until: null }]);
  await store.pause();
  await store.save(() => [{ key: KEY_B, port: 9002, until: null }]);
  assert.match(readFileSync(file, 'utf8'), /9001/);
  assert.doesNotMatch(readFileSync(file, 'utf8'), /9002/);
  store.resume(() => [{ key: KEY_B, port: 9002, until: null }]);
  await store.save(() => [{ key: KEY_B, port: 9002, until: null }]);
  assert.match(readFileSync(file, 'utf8'), /9002/);
});

test("a lease keeps its tenant across a restart; a tenant's key differs from the bare resume key's", async (t) => {
  const { store, clock } = setUp(t);
  const resume = '0123456789abcdef0123456789abcdef';
  assert.notEqual(leaseKey(resume, 'alice'), leaseKey(resume));
  assert.notEqual(leaseKey(resume, 'alice'), leaseKey(resume, 'bob'));
  const leases: LeaseRecord[] = [{ key: leaseKey(resume, 'alice'), port: 9003, until: clock.now() + 30_000, tenant: 'alice' }];
  await store.save(() => leases);
  assert.deepEqual(await store.load(), leases);
});

test('a symlink planted at the predictable temporary name FILE.<pid>.tmp is never written through', async (t) => {
  const { dir, file, store } = setUp(t);
  const victim = path.join(dir, 'victim');
  writeFileSync(victim, 'precious\n');
  symlinkSync(victim, `${file}.${process.pid}.tmp`);
  await store.save(() => [{ key: KEY_A, port: 9001, until: null }]);
  assert.equal(readFileSync(victim, 'utf8'), 'precious\n', 'the file the link points to is untouched');
  assert.match(readFileSync(file, 'utf8'), /9001/);
  assert.equal(lstatSync(file).isSymbolicLink(), false);
});

test('a world-writable file planted at the predictable temporary name does not make the state file world-writable', async (t) => {
  const { file, store } = setUp(t);
  const planted = `${file}.${process.pid}.tmp`;
  writeFileSync(planted, '');
  chmodSync(planted, 0o666);
  await store.save(() => [{ key: KEY_A, port: 9001, until: null }]);
  assert.equal(statSync(file).mode & 0o777, 0o600);
});

test('the temporary file is created exclusively: anything already at its path (a link, a file) makes the write fail untouched', async (t) => {
  const { dir } = setUp(t);
  const victim = path.join(dir, 'victim');
  writeFileSync(victim, 'precious\n');
  const link = path.join(dir, 'link');
  symlinkSync(victim, link);
  await assert.rejects(writeNewFile(link, 'written through\n', false), { code: 'EEXIST' });
  await assert.rejects(writeNewFile(victim, 'overwritten\n', false), { code: 'EEXIST' });
  assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
  const names = new Set(Array.from({ length: 100 }, () => temporaryBeside(path.join(dir, 'leases.json'))));
  assert.equal(names.size, 100, 'temporary names are not predictable');
  for (const name of names) assert.match(path.basename(name), /^leases\.json\.[0-9a-f]{16}\.tmp$/);
});

test('a state file in a directory others can write without the sticky bit is refused at load; a sticky one like /tmp is accepted', async (t) => {
  const { dir, store } = setUp(t);
  for (const mode of [0o777, 0o770, 0o702]) {
    chmodSync(dir, mode);
    await assert.rejects(store.load(), (err: Error) => err instanceof UsageError && err.message.includes(`its directory ${dir} is writable by others`) && !err.message.includes('\n'));
  }
  chmodSync(dir, 0o1777);
  assert.deepEqual(await store.load(), []);
  chmodSync(dir, 0o755);
  assert.deepEqual(await store.load(), []);
});

test('a state path that is a symbolic link is refused at load: the relay replaces the file, never what a link points to', async (t) => {
  const { dir, file, store } = setUp(t);
  writeFileSync(path.join(dir, 'elsewhere.json'), '');
  symlinkSync(path.join(dir, 'elsewhere.json'), file);
  await assert.rejects(store.load(), /is a symbolic link/);
});

test('in a sticky directory anyone can write, a state file planted by another user is refused', { skip: process.getuid?.() !== 0 && 'needs root to plant a file of another user' }, async (t) => {
  const { dir, file, store } = setUp(t);
  chmodSync(dir, 0o1777);
  writeFileSync(file, `{"version":1,"leases":[{"key":"${KEY_A}","port":9001,"until":null}]}`);
  chownSync(file, 65534, 65534);
  await assert.rejects(store.load(), /belongs to another user \(uid 65534\)/);
});

test('a state file locked by another running relay is refused at load, in one line naming the file and its pid', async (t) => {
  const { file, store } = setUp(t);
  // The test runner: a process that runs and is not this one.
  writeFileSync(`${file}.lock`, `${process.ppid}\n${process.ppid}\n`);
  await assert.rejects(store.load(), (err: Error) => {
    assert.ok(err instanceof UsageError);
    assert.equal(err.message, `--state ${file} is in use by another relay (pid ${process.ppid}, in ${file}.lock): stop it, or give each relay its own --state file`);
    return true;
  });
  assert.equal(readFileSync(`${file}.lock`, 'utf8'), `${process.ppid}\n${process.ppid}\n`, 'the other relay keeps its lock');
});

test('the lock of a relay that is no longer running is taken over, with a warning naming its pid', async (t) => {
  const { file, store, logged } = setUp(t);
  const dead = spawnSync(process.execPath, ['-e', '']).pid;
  writeFileSync(`${file}.lock`, `${dead}\n${dead}\n`);
  assert.deepEqual(await store.load(), []);
  assert.match(readFileSync(`${file}.lock`, 'utf8'), new RegExp(`^${process.pid}\n${process.pid}\n`));
  const warning = logged.find((line) => /taking over the lock of a relay that is no longer running/.test(line.msg)) as unknown as Record<string, unknown> | undefined;
  assert.equal(warning?.['pid'], dead);
  // Garbage in the lock (no pid at all) is no relay either.
  writeFileSync(`${file}.lock`, 'not a pid\n');
  assert.deepEqual(await store.load(), []);
  assert.match(readFileSync(`${file}.lock`, 'utf8'), new RegExp(`^${process.pid}\n${process.pid}\n`));
});

test('the lock belongs to the relay, not the worker: a new worker of the same relay (a restart, an upgrade) takes it over without a warning', async (t) => {
  const { file, store, logged } = setUp(t);
  // This process is the relay; a worker of it that died left the lock.
  writeFileSync(`${file}.lock`, `${process.pid}\n999999999\n`);
  assert.deepEqual(await store.load(), []);
  assert.match(readFileSync(`${file}.lock`, 'utf8'), new RegExp(`^${process.pid}\n${process.pid}\n`));
  assert.equal(logged.filter((line) => line.level >= 40).length, 0);
});

test('an upgrade called off (resume): the worker that keeps serving holds the lock again, not the new worker that failed', async (t) => {
  const { file, store } = setUp(t);
  await store.load();
  await store.pause();
  writeFileSync(`${file}.lock`, `${process.pid}\n999999999\n`); // the new worker took it, then failed
  store.resume(() => []);
  await eventually(() => readFileSync(`${file}.lock`, 'utf8').startsWith(`${process.pid}\n${process.pid}\n`), 2000, 'the lock to name this worker again');
});
