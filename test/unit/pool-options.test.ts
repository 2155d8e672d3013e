import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { listenViaRelay, UsageError, type PublicAddress, type RelayClientOptions } from '../../src/index.js';
import { poolKeyOf } from '../../src/client/options.js';
import { helloFor } from '../../src/client/handshake.js';
import { FleetMembers } from '../../src/client/fleet-members.js';
import { silentLogger } from '../../src/log.js';

const KEY = '0123456789abcdef0123456789abcdef';
const OTHER = 'fedcba9876543210fedcba9876543210';

const usage = (pattern: RegExp) => (err: unknown) => err instanceof UsageError && pattern.test(err.message);

test('pool options: a bad pool key, or a pool key with a resume key or file, is a UsageError saying why', () => {
  const bad: [Partial<RelayClientOptions>, RegExp][] = [
    [{ poolKey: 'not-a-key' }, /^poolKey must be 32 hex digits$/],
    [{ poolKey: KEY, resumeKey: OTHER }, /cannot be combined with a resume key .*belongs to the pool key/],
    [{ poolFile: '/nonexistent/pool.key', resumeFile: '/nonexistent/resume.key' }, /cannot be combined with a resume key/],
    [{ poolKey: KEY, resumeFile: '/nonexistent/resume.key' }, /cannot be combined/],
    [{ poolFile: '/nonexistent-dir/pool.key' }, /^cannot create pool file \/nonexistent-dir\/pool.key: ENOENT$/],
    [{ admit: 'yes' as unknown as NonNullable<RelayClientOptions['admit']> }, /^admit must be a function$/],
  ];
  for (const [options, expected] of bad) {
    assert.throws(() => listenViaRelay(() => {}, { host: '127.0.0.1', port: 8080, ...options }), usage(expected), JSON.stringify(options));
  }
});

test('pool file: made on first use with mode 0600 and read back by every replica; one that holds no key is refused', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pool-file-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'pool.key');
  const key = poolKeyOf({ host: 'h', port: 1, poolFile: file });
  assert.match(key ?? '', /^[0-9a-f]{32}$/);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.equal((await readFile(file, 'utf8')).trim(), key);
  assert.equal(poolKeyOf({ host: 'h', port: 1, poolFile: file }), key, 'a second replica with the copied file has the same key');
  assert.equal(poolKeyOf({ host: 'h', port: 1, poolFile: file, poolKey: OTHER }), OTHER, 'poolKey wins over poolFile');
  await writeFile(file, 'garbage\n');
  assert.throws(() => poolKeyOf({ host: 'h', port: 1, poolFile: file }), usage(/^pool file .* does not hold a pool key \(32 hex digits\); remove it to start afresh$/));
});

test('pool HELLO: a member sends pool= instead of resume= and adds pool to its features; a service that is no member does not list pool', () => {
  const options = { host: 'relay.example', port: 7000 };
  const pooled = helloFor(options, 40000, OTHER, KEY);
  assert.equal(pooled.pool, KEY);
  assert.equal(pooled.resume, undefined);
  assert.equal(pooled.port, 40000);
  assert.ok(pooled.features?.includes('pool'));
  const plain = helloFor(options, undefined, OTHER);
  assert.equal(plain.resume, OTHER);
  assert.equal(plain.features?.includes('pool'), false);
});

class FakeMember extends EventEmitter {
  publicAddress: PublicAddress | undefined = undefined;
  readonly told: string[] = [];
  close(): void {}
  drain(): Promise<void> {
    this.told.push('drain');
    return Promise.resolve();
  }
  setHealth(state: 'up' | 'down'): void {
    this.told.push(state);
  }
}

test('fleet with a pool: every node gets the pool key (no resume key), and a node joined after a drain or a health change is told too', async () => {
  const made: { options: RelayClientOptions; member: FakeMember }[] = [];
  const events = { established: () => {}, unauthenticated: () => {}, failed: () => {} };
  const make = (options: RelayClientOptions): FakeMember => {
    const member = new FakeMember();
    made.push({ options, member });
    return member;
  };
  const fleet = new FleetMembers({ host: 'h', port: 7000, poolKey: KEY }, make, silentLogger, events);
  await fleet.add(['127.0.0.1:7001'], true);
  fleet.setHealth('down');
  await fleet.drain();
  await fleet.add(['127.0.0.2:7001'], true);
  assert.deepEqual(
    made.map(({ options }) => [options.poolKey, options.resumeKey]),
    [
      [KEY, undefined],
      [KEY, undefined],
    ],
  );
  assert.deepEqual(made[0]!.member.told, ['down', 'drain']);
  assert.deepEqual(made[1]!.member.told, ['drain', 'down']);
});
