import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { addressGroup } from '../../src/protocol/addresses.js';
import { ClientsPerAddress, ConnectRate } from '../../src/relay/address-limits.js';
import { IdleSweep } from '../../src/relay/idle-sweep.js';
import { ManualClock } from '../helpers/clock.js';

test('addresses are grouped: IPv4 alone, IPv4-mapped IPv6 as IPv4, IPv6 by its /64 in any spelling', () => {
  assert.equal(addressGroup('192.0.2.7'), '192.0.2.7');
  assert.equal(addressGroup('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(addressGroup('::FFFF:c000:0207'), '192.0.2.7');
  assert.equal(addressGroup('0:0:0:0:0:ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(addressGroup('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(addressGroup('2001:0DB8:0001:0002:ffff:ffff:ffff:fffe'), '2001:db8:1:2::/64');
  assert.equal(addressGroup('2001:db8:1:2::9%eth0'), '2001:db8:1:2::/64');
  assert.equal(addressGroup('2001:db8::1'), '2001:db8:0:0::/64');
  assert.notEqual(addressGroup('2001:db8:1:3::1'), addressGroup('2001:db8:1:2::1'));
  assert.equal(addressGroup('::1'), '0:0:0:0::/64');
  // Not an address we can parse: limited as the string it is, never thrown on.
  assert.equal(addressGroup('1:2:3'), '1:2:3');
  assert.equal(addressGroup('1::2::3'), '1::2::3');
});

test('open clients per address: the limit is per call, and a close makes room', () => {
  const table = new ClientsPerAddress();
  const a = [new EventEmitter(), new EventEmitter(), new EventEmitter()];
  assert.equal(table.tryAdd(a[0]!, '192.0.2.1', 2), true);
  assert.equal(table.tryAdd(a[1]!, '192.0.2.1', 2), true);
  assert.equal(table.tryAdd(a[2]!, '192.0.2.1', 2), false, 'third from one address');
  assert.equal(table.tryAdd(new EventEmitter(), '192.0.2.2', 2), true, 'another address is not affected');
  assert.equal(table.tryAdd(a[2]!, '192.0.2.1', 3), true, 'a larger limit for this check (a tenant) lets it in');
  for (const client of a) client.emit('close');
  assert.equal(table.count('192.0.2.1'), 0);
  assert.equal(table.size, 1, 'an address with nothing open takes no memory');
  assert.equal(table.tryAdd(new EventEmitter(), '192.0.2.1', 0), true, '0 means no limit');
});

test('connect rate: a burst of one second, then the rate; another address has its own bucket', () => {
  const clock = new ManualClock();
  const rate = new ConnectRate(10, clock);
  const allowed = (n: number, group = 'x'): number => Array.from({ length: n }, () => rate.take(group)).filter(Boolean).length;
  assert.equal(allowed(15), 10, 'the burst is one second worth');
  assert.equal(allowed(1, 'y'), 1);
  clock.advance(100);
  assert.equal(allowed(5), 1, 'a tenth of a second refills one');
  clock.advance(350);
  assert.equal(allowed(5), 3);
  clock.advance(60_000);
  assert.equal(allowed(20), 10, 'refills up to the burst, not beyond');
});

test('connect rate: buckets full again are dropped, and a flood of addresses stops at the cap', () => {
  const clock = new ManualClock();
  const rate = new ConnectRate(5, clock, 100);
  for (let i = 0; i < 50; i++) rate.take(`a${i}`);
  clock.advance(1000);
  for (let i = 0; i < 50; i++) rate.take(`b${i}`);
  assert.ok(rate.size <= 60, `refilled buckets make room for newcomers (size ${rate.size})`);
  for (let i = 0; i < 10_000; i++) rate.take(`c${i}`);
  assert.equal(rate.size, 100, 'never more than the cap');
  assert.ok(rate.forgotten > 0, 'at the cap the least recently seen is forgotten');
  // A flooding address keeps its empty bucket: it is always the most recently seen.
  const flood = (): number => Array.from({ length: 10 }, () => rate.take('attacker')).filter(Boolean).length;
  assert.equal(flood(), 5);
  for (let i = 0; i < 10_000; i++) {
    rate.take(`d${i}`);
    if (i % 50 === 0) assert.equal(rate.take('attacker'), false);
  }
});

test('idle sweep: a tunnel without a byte for the timeout is reported once, a busy one never', () => {
  const clock = new ManualClock();
  const idle: string[] = [];
  const sweep = new IdleSweep<string>(10_000, clock, (name) => idle.push(name));
  const quiet = { a: 0, b: 0 };
  const busy = { a: 0, b: 0 };
  sweep.watch('quiet', quiet);
  sweep.watch('busy', busy);
  for (let t = 0; t < 9; t++) {
    clock.advance(1000);
    busy[t % 2 === 0 ? 'a' : 'b'] += 1;
  }
  assert.deepEqual(idle, []);
  clock.advance(1000);
  busy.a += 1;
  assert.deepEqual(idle, ['quiet'], 'reported at the timeout');
  clock.advance(30_000);
  assert.deepEqual(idle, ['quiet', 'busy'], 'once the busy one goes quiet too, it is reported');
  assert.equal(sweep.size, 0);
  assert.equal(clock.pendingTimers, 0, 'no timer runs while nothing is watched');
  sweep.watch('late', { a: 0, b: 0 });
  sweep.forget('late');
  clock.advance(30_000);
  assert.deepEqual(idle, ['quiet', 'busy'], 'a forgotten tunnel is never reported');
});
