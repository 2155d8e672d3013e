import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { UsageError } from '../../src/errors.js';
import { StateLock } from '../../src/leases/state-lock.js';

const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';
const noProc = !existsSync(BOOT_ID_FILE) && 'needs /proc (Linux)';

/** Field 22 of /proc/PID/stat, read here independently of the code under test. */
function startTimeOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

function setUp(t: { after: (fn: () => void) => void }) {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'leases.json');
  return { file, lockFile: `${file}.lock`, lock: new StateLock(file, pino({ enabled: false })), boot: readFileSync(BOOT_ID_FILE, 'utf8').trim() };
}

// The test runner (process.ppid) is a live process that is not this one.

test('the lock records the boot id and the relay start time beside the pids', { skip: noProc }, async (t) => {
  const { lockFile, lock, boot } = setUp(t);
  await lock.acquire();
  assert.equal(readFileSync(lockFile, 'utf8'), `${process.pid}\n${process.pid}\n${boot}\n${startTimeOf(process.pid)}\n`);
});

test('a lock from another boot is taken over even though its pid now runs (reused after a power loss)', { skip: noProc }, async (t) => {
  const { lockFile, lock } = setUp(t);
  writeFileSync(lockFile, `${process.ppid}\n${process.ppid}\n00000000-0000-0000-0000-000000000000\n${startTimeOf(process.ppid)}\n`);
  await lock.acquire();
  assert.match(readFileSync(lockFile, 'utf8'), new RegExp(`^${process.pid}\n${process.pid}\n`));
});

test('a lock whose pid runs but was started at another time (another process reusing the pid) is taken over', { skip: noProc }, async (t) => {
  const { lockFile, lock, boot } = setUp(t);
  writeFileSync(lockFile, `${process.ppid}\n${process.ppid}\n${boot}\n${Number(startTimeOf(process.ppid)) + 1}\n`);
  await lock.acquire();
  assert.match(readFileSync(lockFile, 'utf8'), new RegExp(`^${process.pid}\n${process.pid}\n`));
});

test('a lock of a running relay whose boot id and start time match is refused and left as it was', { skip: noProc }, async (t) => {
  const { lockFile, lock, boot } = setUp(t);
  const text = `${process.ppid}\n${process.ppid}\n${boot}\n${startTimeOf(process.ppid)}\n`;
  writeFileSync(lockFile, text);
  await assert.rejects(lock.acquire(), (err: Error) => err instanceof UsageError && err.message.includes(`in use by another relay (pid ${process.ppid}`));
  assert.equal(readFileSync(lockFile, 'utf8'), text);
});
