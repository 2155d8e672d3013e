import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LeaseAuthority } from '../../src/upgrade/lease-authority.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const NOW = 1_000_000;

test('workers: a port claimed by one worker is taken for every other key, at every worker', () => {
  const authority = new LeaseAuthority();
  assert.equal(authority.claim(0, A, 9001, undefined, NOW), 'granted');
  assert.equal(authority.claim(1, B, 9001, undefined, NOW), 'taken');
  assert.equal(authority.claim(0, B, 9001, undefined, NOW), 'taken');
  assert.equal(authority.claim(1, B, 9002, undefined, NOW), 'granted');
  assert.equal(authority.slotOfPort(9001), 0);
  assert.equal(authority.slotOfPort(9002), 1);
});

test('workers: a key that registers at another worker is sent to its own port, and moves there once reported live', () => {
  const authority = new LeaseAuthority();
  authority.claim(0, A, 9001, undefined, NOW);
  authority.report(0, [{ key: A, port: 9001, until: NOW + 60_000 }], NOW);
  assert.deepEqual(authority.claim(1, A, 9005, undefined, NOW), { elsewhere: 9001 });
  assert.equal(authority.claim(1, A, 9001, undefined, NOW), 'moved');
  assert.equal(authority.slotOfPort(9001), 1);
  // The old worker's table, sent before it heard of the move, does not take the key back.
  assert.deepEqual(authority.report(0, [{ key: A, port: 9001, until: NOW + 60_000 }], NOW), []);
  assert.equal(authority.slotOfPort(9001), 1);
  assert.deepEqual(authority.report(1, [{ key: A, port: 9001, until: null }], NOW), [{ key: A, port: 9001, from: 0 }]);
  // Told once.
  assert.deepEqual(authority.report(1, [{ key: A, port: 9001, until: null }], NOW), []);
});

test('workers: a port a worker no longer reports is free again, but a fresh claim survives a table sent before it', () => {
  const authority = new LeaseAuthority();
  authority.claim(0, A, 9001, undefined, NOW);
  authority.report(0, [], NOW + 10);
  assert.equal(authority.claim(1, B, 9001, undefined, NOW), 'taken');
  authority.report(0, [{ key: A, port: 9001, until: null }], NOW + 20);
  authority.report(0, [], NOW + 30);
  assert.equal(authority.claim(1, B, 9001, undefined, NOW + 40), 'granted');
});

test('workers: services and tenant keys are counted over every worker', () => {
  const authority = new LeaseAuthority();
  authority.report(0, [{ key: A, port: 9001, until: null, tenant: 't' }], NOW);
  authority.report(1, [{ key: B, port: 9002, until: NOW + 5000, tenant: 't' }], NOW);
  assert.equal(authority.servicesElsewhere(1, 'c'.repeat(64)), 1, 'a reservation is no registered service');
  assert.equal(authority.servicesElsewhere(0, 'c'.repeat(64)), 0);
  assert.equal(authority.servicesElsewhere(1, A), 0, 'the key itself is not counted');
  assert.deepEqual(authority.tenantKeys('t').sort(), [A, B]);
  assert.deepEqual(authority.snapshot().length, 2);
});

test('workers: a dead worker leaves its services their ports for the grace; its replacement gets them', () => {
  const authority = new LeaseAuthority();
  authority.report(0, [{ key: A, port: 9001, until: null }], NOW);
  authority.died(0, 30_000, NOW);
  assert.deepEqual(authority.leasesOf(0), [{ key: A, port: 9001, until: NOW + 30_000 }]);
  assert.equal(authority.claim(1, B, 9001, undefined, NOW), 'taken');
  authority.died(0, 0, NOW);
  assert.equal(authority.claim(1, B, 9001, undefined, NOW), 'granted', 'with no grace nothing is kept');
});

test('workers: a names-port host goes to the worker with its most specific door; none, or the asker itself, is no hand-over', () => {
  const authority = new LeaseAuthority();
  authority.claim(0, A, '*.shop.test', undefined, NOW);
  authority.claim(1, B, 'cart.shop.test', undefined, NOW);
  const candidates = ['cart.shop.test', '*.shop.test', '*.test'];
  assert.deepEqual(authority.hostElsewhere(0, candidates), ['cart.shop.test'], 'the exact name at worker 1 beats the wildcard at worker 0');
  assert.deepEqual(authority.hostElsewhere(1, candidates), [], 'worker 1 has it itself');
  assert.deepEqual(authority.hostElsewhere(1, ['other.shop.test', '*.shop.test', '*.test']), ['*.shop.test'], 'only the wildcard has it, at worker 0');
  assert.deepEqual(authority.hostElsewhere(0, ['other.elsewhere', '*.elsewhere']), [], 'nobody has it');
});

test("workers: a new pool's members go to the worker whose member asked first, until its claim is in the table; then to the claim's worker", () => {
  const authority = new LeaseAuthority();
  const POOL = 'pool-key';
  assert.equal(authority.slotOfKey(POOL, 0, NOW), -1, 'the first member registers where it landed');
  assert.equal(authority.slotOfKey(POOL, 1, NOW + 5), 0, 'a second member at the same moment goes to the first one');
  assert.equal(authority.slotOfKey(POOL, 0, NOW + 6), -1, 'at that worker it stays');
  authority.claim(1, POOL, 9005, undefined, NOW + 20_000);
  assert.equal(authority.slotOfKey(POOL, 0, NOW + 20_001), 1, 'the table decides once the key is claimed');
  const LATER = 'later-pool';
  assert.equal(authority.slotOfKey(LATER, 1, NOW), -1);
  assert.equal(authority.slotOfKey(LATER, 0, NOW + 10_000), -1, 'an old first ask is forgotten: its registration failed');
  const DEAD = 'dead-pool';
  assert.equal(authority.slotOfKey(DEAD, 1, NOW + 30_000), -1);
  authority.died(1, 0, NOW + 30_001);
  assert.equal(authority.slotOfKey(DEAD, 0, NOW + 30_002), -1, 'not sent to a worker that died');
});
