import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTO_CEILING, AUTO_FLOOR, WarmSizer } from '../../src/client/warm-sizer.js';
import { ManualClock } from '../helpers/clock.js';

function burst(sizer: WarmSizer, clock: ManualClock, clients: number, spacingMs = 0): void {
  for (let i = 0; i < clients; i++) {
    sizer.arrival();
    clock.advance(spacingMs);
  }
}

test('prewarm auto: with no clients the pool keeps the floor', () => {
  const clock = new ManualClock();
  const sizer = new WarmSizer(clock);
  assert.equal(sizer.target(), AUTO_FLOOR);
  clock.advance(60_000);
  assert.equal(sizer.target(), AUTO_FLOOR);
});

test('prewarm auto: a burst of 20 clients arriving together sizes the pool for the next such burst, with headroom', () => {
  const clock = new ManualClock();
  const sizer = new WarmSizer(clock);
  burst(sizer, clock, 20);
  assert.equal(sizer.target(), 25);
  // Another burst 200 ms later finds the pool at least that large still.
  clock.advance(200);
  assert.ok(sizer.target() >= 24);
});

test('prewarm auto: a steady stream needs what arrives while a connection opens, not its running total', () => {
  const clock = new ManualClock();
  const sizer = new WarmSizer(clock);
  // 20 clients/s for 10 s, against a relay where a data connection takes 200 ms to open.
  for (let i = 0; i < 50; i++) sizer.dialed(200);
  burst(sizer, clock, 200, 50);
  const target = sizer.target();
  // 4 dial times (800 ms) of arrivals, 16, with headroom: not 200.
  assert.ok(target >= 16 && target <= 25, `target ${target}`);
  // The same stream against a relay nearby needs less.
  const quick = new WarmSizer(clock);
  for (let i = 0; i < 50; i++) quick.dialed(0.5);
  burst(quick, clock, 200, 50);
  assert.ok(quick.target() <= 8, `target ${quick.target()}`);
});

test('prewarm auto: after the clients stop, the pool shrinks back to the floor within a minute', () => {
  const clock = new ManualClock();
  const sizer = new WarmSizer(clock);
  burst(sizer, clock, 40);
  const sizes: number[] = [];
  for (let s = 0; s < 6; s++) {
    sizes.push(sizer.target());
    clock.advance(10_000);
  }
  assert.deepEqual(
    sizes,
    [...sizes].sort((a, b) => b - a),
    `not shrinking: ${sizes.join(',')}`,
  );
  assert.equal(sizes[0], 50);
  assert.equal(sizer.target(), AUTO_FLOOR);
});

test("prewarm auto: never above the ceiling, which the relay's ERR limit lowers (and a later regrow raises)", () => {
  const clock = new ManualClock();
  const sizer = new WarmSizer(clock);
  burst(sizer, clock, 500);
  assert.equal(sizer.target(), AUTO_CEILING);
  sizer.limitCeiling(8);
  assert.equal(sizer.target(), 8);
  sizer.limitCeiling(100);
  assert.equal(sizer.target(), AUTO_CEILING, 'the relay may allow more again, never above the first ceiling');
});

test('prewarm auto: nonsense dial times are ignored', () => {
  const clock = new ManualClock();
  const sizer = new WarmSizer(clock);
  sizer.dialed(Number.NaN);
  sizer.dialed(-1);
  burst(sizer, clock, 4);
  assert.equal(sizer.target(), 5);
});
