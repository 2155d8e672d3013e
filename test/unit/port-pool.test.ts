import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { PortPool, type TryListen } from '../../src/leases/port-pool.js';
import { mulberry32, randomInt } from './prng.js';
import { ManualClock } from '../helpers/clock.js';

const RANGE = { first: 5000, last: 5004 };
const KEY = '0123456789abcdef0123456789abcdef';
const OTHER_KEY = 'fedcba9876543210fedcba9876543210';
const GRACE_MS = 30_000;

/** A stand-in for listen(): ports in `busy` are held by another program. Records every try. */
function fakeListen(busy: Iterable<number> = []) {
  const held = new Set(busy);
  const tried: number[] = [];
  const tryListen: TryListen = async (port) => {
    tried.push(port);
    return !held.has(port);
  };
  return { tryListen, tried, held };
}

function fakeClock() {
  const clock = new ManualClock();
  return { clock, now: clock };
}

test('ports are handed out lowest free first', async () => {
  const pool = new PortPool(RANGE);
  const { tryListen } = fakeListen();
  assert.equal(await pool.acquire(tryListen), 5000);
  assert.equal(await pool.acquire(tryListen), 5001);
  assert.equal(await pool.acquire(tryListen), 5002);
});

test('ports another program holds are skipped, and used once that program lets go', async () => {
  const pool = new PortPool(RANGE);
  const { tryListen, tried, held } = fakeListen([5000, 5001, 5003]);
  assert.equal(await pool.acquire(tryListen), 5002);
  assert.deepEqual(tried, [5000, 5001, 5002]);
  assert.equal(await pool.acquire(tryListen), 5004);
  held.delete(5001);
  assert.equal(await pool.acquire(tryListen), 5001, 'a port that was busy is not remembered as taken');
});

test('the wanted port is given when it is free', async () => {
  const pool = new PortPool(RANGE);
  const { tryListen, tried } = fakeListen();
  assert.equal(await pool.acquire(tryListen, 5003), 5003);
  assert.deepEqual(tried, [5003], 'no other port is tried first');
  assert.equal(await pool.acquire(tryListen), 5000, 'others still start from the lowest');
  assert.equal(await pool.acquire(tryListen, 5004), 5004);
});

test('a wanted port out of range is ignored and never listened on', async () => {
  const pool = new PortPool(RANGE);
  const { tryListen, tried } = fakeListen();
  assert.equal(await pool.acquire(tryListen, 80), 5000);
  assert.equal(await pool.acquire(tryListen, 4999), 5001);
  assert.equal(await pool.acquire(tryListen, 5005), 5002);
  assert.equal(await pool.acquire(tryListen, 65535), 5003);
  assert.ok(!tried.some((port) => port < RANGE.first || port > RANGE.last), `tried ${tried.join(',')}`);
});

test('a wanted port that is already given out, or busy elsewhere, is not given again', async () => {
  const pool = new PortPool(RANGE);
  const { tryListen, held } = fakeListen();
  assert.equal(await pool.acquire(tryListen, 5002), 5002);
  assert.equal(await pool.acquire(tryListen, 5002), 5000, 'held by another service: the lowest free instead');
  held.add(5003);
  assert.equal(await pool.acquire(tryListen, 5003), 5001, 'busy in another program: the lowest free instead');
});

test('a released port can be acquired again', async () => {
  const pool = new PortPool(RANGE);
  const { tryListen } = fakeListen();
  assert.equal(await pool.acquire(tryListen), 5000);
  assert.equal(await pool.acquire(tryListen), 5001);
  pool.release(5000);
  assert.equal(pool.isReserved(5000), false);
  assert.equal(await pool.acquire(tryListen), 5000);
  pool.release(5001);
  assert.equal(await pool.acquire(tryListen, 5001), 5001);
});

test('a port released with a resume key is kept for that key during the grace period', async () => {
  const { now } = fakeClock();
  const pool = new PortPool(RANGE, now);
  const { tryListen } = fakeListen();
  assert.equal(await pool.acquire(tryListen, 5000, KEY), 5000);
  assert.equal(await pool.acquire(tryListen), 5001);
  pool.release(5000, KEY, GRACE_MS);
  assert.equal(pool.isReserved(5000), true);

  assert.equal(await pool.acquire(tryListen), 5002, 'a newcomer does not get the reserved port');
  assert.equal(await pool.acquire(tryListen, 5000), 5003, 'not even by asking for it');
  assert.equal(await pool.acquire(tryListen, 5000, OTHER_KEY), 5004, 'nor with another key');
  assert.equal(pool.isReserved(5000), true);

  assert.equal(await pool.acquire(tryListen, 5000, KEY), 5000, 'the key holder gets its old port back');
  assert.equal(pool.isReserved(5000), false, 'the reservation is used up');
});

test('a reserved port is free for anyone once the grace period has passed', async () => {
  const { clock, now } = fakeClock();
  const pool = new PortPool(RANGE, now);
  const { tryListen } = fakeListen();
  assert.equal(await pool.acquire(tryListen), 5000);
  pool.release(5000, KEY, GRACE_MS);

  clock.advance(GRACE_MS - 1);
  assert.equal(pool.isReserved(5000), true, 'still reserved 1 ms before the grace ends');
  assert.equal(await pool.acquire(tryListen), 5001);
  pool.release(5001);

  clock.advance(1);
  assert.equal(pool.isReserved(5000), false, 'free when the grace ends');
  assert.equal(await pool.acquire(tryListen), 5000, 'a newcomer may now have it');
});

test('a reservation ends by itself when the grace passes, and its owner is told', async () => {
  const { clock, now } = fakeClock();
  const ended: string[] = [];
  const pool = new PortPool({ first: 5000, last: 5001 }, now, (port, key, why) => ended.push(`${port} ${key} ${why}`));
  const { tryListen } = fakeListen();
  assert.equal(await pool.acquire(tryListen), 5000);
  pool.release(5000, KEY, GRACE_MS);
  clock.advance(GRACE_MS);
  assert.deepEqual(ended, [`5000 ${KEY} expired`]);
  assert.equal(pool.isReserved(5000), false);
  assert.equal(await pool.acquire(tryListen), 5000);
});

test('reservations never lock the range: a newcomer who finds no free port ends the oldest', async () => {
  const { clock, now } = fakeClock();
  const ended: string[] = [];
  const pool = new PortPool({ first: 5000, last: 5002 }, now, (port, _key, why) => ended.push(`${port} ${why}`));
  const { tryListen } = fakeListen();
  for (const port of [5000, 5001, 5002]) assert.equal(await pool.acquire(tryListen, port, `${port}`.padStart(32, '0')), port);
  pool.release(5001, '5001'.padStart(32, '0'), GRACE_MS);
  clock.advance(10);
  pool.release(5000, '5000'.padStart(32, '0'), GRACE_MS);
  clock.advance(10);
  pool.release(5002, KEY, GRACE_MS);
  assert.equal(await pool.acquire(tryListen, undefined, OTHER_KEY), 5001, 'the oldest reservation goes first');
  assert.deepEqual(ended, ['5001 evicted']);
  assert.equal(await pool.acquire(tryListen, 5002, KEY), 5002, "the key holder's own reservation was not touched");
  assert.equal(await pool.acquire(tryListen), 5000);
  assert.equal(await pool.acquire(tryListen), undefined, 'live ports are never evicted');
});

test('a key that comes back gets its reserved port even when it asks for another one', async () => {
  const pool = new PortPool(RANGE, fakeClock().now);
  const { tryListen } = fakeListen();
  assert.equal(await pool.acquire(tryListen, 5003, KEY), 5003);
  pool.release(5003, KEY, GRACE_MS);
  assert.equal(await pool.acquire(tryListen, 5001, KEY), 5003);
});

test('the snapshot lists live ports and reservations by key, and reserve() installs them again', async () => {
  const { clock, now } = fakeClock();
  const pool = new PortPool(RANGE, now);
  const { tryListen } = fakeListen();
  assert.equal(await pool.acquire(tryListen, 5001, KEY), 5001);
  assert.equal(await pool.acquire(tryListen), 5000, 'a port without a key has no lease');
  assert.equal(await pool.acquire(tryListen, 5002, OTHER_KEY), 5002);
  pool.release(5002, OTHER_KEY, GRACE_MS);
  const until = clock.now() + GRACE_MS;
  assert.deepEqual(
    pool.snapshot().sort((a, b) => a.port! - b.port!),
    [
      { key: KEY, port: 5001, until: null },
      { key: OTHER_KEY, port: 5002, until },
    ],
  );
  const next = new PortPool(RANGE, now);
  assert.equal(next.reserve(5002, OTHER_KEY, until), true);
  assert.equal(next.reserve(4000, OTHER_KEY, until), false, 'out of range');
  assert.equal(await next.acquire(tryListen, 5002), 5000, 'a stranger does not get a reserved port');
  assert.equal(await next.acquire(tryListen, undefined, OTHER_KEY), 5002);
});

test('a port released with a key but no grace (relay shutting down) is not reserved', async () => {
  const pool = new PortPool(RANGE, fakeClock().now);
  const { tryListen } = fakeListen();
  assert.equal(await pool.acquire(tryListen), 5000);
  pool.release(5000, KEY, 0);
  assert.equal(pool.isReserved(5000), false);
  assert.equal(await pool.acquire(tryListen), 5000);
});

test('the key holder gets another port if its reserved one is busy elsewhere', async () => {
  const pool = new PortPool(RANGE, fakeClock().now);
  const { tryListen, held } = fakeListen();
  assert.equal(await pool.acquire(tryListen, 5002), 5002);
  pool.release(5002, KEY, GRACE_MS);
  held.add(5002);
  assert.equal(await pool.acquire(tryListen, 5002, KEY), 5000);
});

test('an exhausted range gives undefined, and a released port ends the exhaustion', async () => {
  const pool = new PortPool({ first: 6000, last: 6001 });
  const { tryListen } = fakeListen();
  assert.equal(await pool.acquire(tryListen), 6000);
  assert.equal(await pool.acquire(tryListen), 6001);
  assert.equal(await pool.acquire(tryListen), undefined);
  assert.equal(await pool.acquire(tryListen, 6000), undefined);
  pool.release(6001);
  assert.equal(await pool.acquire(tryListen), 6001);

  const allBusy = new PortPool({ first: 6000, last: 6002 });
  assert.equal(await allBusy.acquire(fakeListen([6000, 6001, 6002]).tryListen), undefined);
});

test('concurrent acquires never get the same port, however listen() interleaves', async () => {
  const random = mulberry32(99);
  for (let round = 0; round < 50; round++) {
    const size = randomInt(random, 1, 12);
    const pool = new PortPool({ first: 7000, last: 7000 + size - 1 });
    const busy = new Set<number>();
    for (let p = 7000; p < 7000 + size; p++) if (random() < 0.2) busy.add(p);
    // Each listen() answers after a random number of event-loop turns.
    const tryListen: TryListen = async (port) => {
      for (let i = randomInt(random, 0, 3); i > 0; i--) await tick();
      return !busy.has(port);
    };
    const callers = randomInt(random, 1, size + 3);
    const wanted = (): number | undefined => (random() < 0.5 ? 7000 + randomInt(random, 0, size - 1) : undefined);
    const got = await Promise.all(Array.from({ length: callers }, () => pool.acquire(tryListen, wanted())));
    const ports = got.filter((port): port is number => port !== undefined);
    assert.equal(new Set(ports).size, ports.length, `round ${round}: duplicates in ${got.join(',')}`);
    assert.ok(
      ports.every((port) => !busy.has(port)),
      `round ${round}: a busy port was handed out`,
    );
    const free = size - busy.size;
    assert.equal(ports.length, Math.min(callers, free), `round ${round}: every caller served while ports were free`);
  }
});

test('two concurrent acquires wanting the same port: one gets it, the other the next free', async () => {
  const pool = new PortPool(RANGE);
  const tryListen: TryListen = async () => {
    await tick();
    return true;
  };
  const [a, b] = await Promise.all([pool.acquire(tryListen, 5003), pool.acquire(tryListen, 5003)]);
  assert.deepEqual([a, b].sort(), [5000, 5003]);
});

test('a listen() that throws does not leave its port held forever', async () => {
  const pool = new PortPool(RANGE);
  await assert.rejects(
    pool.acquire(async () => {
      throw new Error('EACCES');
    }),
  );
  assert.equal(await pool.acquire(fakeListen().tryListen), 5000);
});

test('a tenant gets only its own ports, and a request outside them gets one inside', async () => {
  const pool = new PortPool(RANGE);
  const { tryListen } = fakeListen();
  const scope = { tenant: 'alice', ports: [{ first: 5003, last: 5004 }] };
  assert.equal(await pool.acquire(tryListen, 5000, KEY, scope), 5003);
  assert.equal(await pool.acquire(tryListen, undefined, OTHER_KEY, scope), 5004);
  assert.equal(await pool.acquire(tryListen, undefined, '1'.repeat(32), scope), undefined, 'its ports are all live');
});

test("a full tenant range evicts only that tenant's oldest reservation, never another tenant's", async () => {
  const { clock } = fakeClock();
  const ended: [number, string][] = [];
  const pool = new PortPool(RANGE, clock, (port, _key, why) => ended.push([port, why]));
  const { tryListen } = fakeListen();
  const alice = { tenant: 'alice', ports: [{ first: 5000, last: 5001 }] };
  const bob = { tenant: 'bob', ports: [{ first: 5000, last: 5001 }] };
  assert.equal(await pool.acquire(tryListen, undefined, KEY, alice), 5000);
  pool.release(5000, KEY, GRACE_MS);
  clock.advance(10);
  assert.equal(await pool.acquire(tryListen, undefined, OTHER_KEY, bob), 5001);
  pool.release(5001, OTHER_KEY, GRACE_MS);
  assert.deepEqual(
    pool
      .snapshot()
      .map((r) => r.tenant)
      .sort(),
    ['alice', 'bob'],
    'reservations remember their tenant',
  );
  assert.equal(pool.reservationsOf('alice'), 1);
  assert.equal(await pool.acquire(tryListen, undefined, '2'.repeat(32), bob), 5001, "bob's newcomer ends bob's own reservation");
  assert.deepEqual(ended, [[5001, 'evicted']]);
  assert.equal(pool.isReserved(5000), true, "alice's reservation is untouched");
  assert.equal(await pool.acquire(tryListen, undefined, '3'.repeat(32), bob), undefined, "bob never evicts alice's");
  pool.revokeTenant('alice');
  assert.deepEqual(ended.at(-1), [5000, 'revoked']);
});

test("a key whose reserved port is no longer among its tenant's ports gets one that is, and the old reservation ends", async () => {
  const ended: [number, string][] = [];
  const pool = new PortPool(RANGE, fakeClock().clock, (port, _key, why) => ended.push([port, why]));
  const { tryListen } = fakeListen();
  assert.equal(await pool.acquire(tryListen, undefined, KEY, { tenant: 'alice', ports: [RANGE] }), 5000);
  pool.release(5000, KEY, GRACE_MS);
  assert.equal(await pool.acquire(tryListen, undefined, KEY, { tenant: 'alice', ports: [{ first: 5003, last: 5004 }] }), 5003);
  assert.deepEqual(ended, [[5000, 'revoked']]);
  assert.equal(pool.reservationsOf('alice'), 0);
});

test('a port being claimed is held against others but is no lease yet: the snapshot leaves it out until its listen succeeds', async () => {
  // A fleet node takes the snapshot's live ports as the ones to defend in etcd: a port
  // still being agreed (etcd may say it is another key's) must not be among them.
  const pool = new PortPool(RANGE);
  let answer!: (ok: boolean) => void;
  const pending = pool.acquire(() => new Promise<boolean>((resolve) => (answer = resolve)), undefined, KEY);
  await tick();
  assert.deepEqual(pool.snapshot(), [], 'nothing is a lease while the claim is open');
  assert.equal(await pool.acquire(fakeListen().tryListen, 5000, OTHER_KEY), 5001, 'yet nobody else gets the port meanwhile');
  answer(true);
  assert.equal(await pending, 5000);
  assert.deepEqual(
    pool.snapshot().map(({ key, port }) => [key, port]),
    [
      [KEY, 5000],
      [OTHER_KEY, 5001],
    ],
  );
});
