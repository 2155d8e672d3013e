import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeartbeatWatch } from '../../src/client/heartbeat.js';
import { ManualClock } from '../helpers/clock.js';

test('heartbeat: a relay silent for three intervals is given up, once, with that limit', () => {
  const clock = new ManualClock();
  const silences: number[] = [];
  new HeartbeatWatch(clock, 1000, (silentMs) => silences.push(silentMs));
  clock.advance(3000);
  assert.deepEqual(silences, [], 'three intervals of silence are still within the limit');
  clock.advance(1000);
  assert.deepEqual(silences, [3000]);
  clock.advance(60_000);
  assert.deepEqual(silences, [3000], 'given up once, not again at every interval');
  assert.equal(clock.pendingTimers, 0);
});

test('heartbeat: every line heard from the relay starts the silence over', () => {
  const clock = new ManualClock();
  let silent = false;
  const watch = new HeartbeatWatch(clock, 1000, () => (silent = true));
  for (let i = 0; i < 10; i++) {
    clock.advance(2500);
    watch.heard();
  }
  assert.equal(silent, false, 'a ping every 2.5 intervals keeps the connection');
  clock.advance(4000);
  assert.equal(silent, true);
});

test('heartbeat: stopped with its connection, it never fires', () => {
  const clock = new ManualClock();
  let silent = false;
  const watch = new HeartbeatWatch(clock, 1000, () => (silent = true));
  clock.advance(1500);
  watch.stop();
  assert.equal(clock.pendingTimers, 0);
  clock.advance(60_000);
  assert.equal(silent, false);
});
