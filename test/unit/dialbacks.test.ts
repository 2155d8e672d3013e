import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { DialbackRegistry, type PendingClient } from '../../src/relay/dialbacks.js';
import { ManualClock } from '../helpers/clock.js';

const TIMEOUT_MS = 1000;
/** The registry only keeps the socket for its owner; no I/O happens on it here. */
const client = (name: string): Socket => ({ name }) as unknown as Socket;

function registry() {
  const clock = new ManualClock();
  const expired: string[] = [];
  const dialbacks = new DialbackRegistry<string>(TIMEOUT_MS, (entry) => expired.push(entry.owner), clock);
  return { clock, expired, dialbacks };
}

test('a token is taken once; an unknown or used one is undefined', () => {
  const { dialbacks } = registry();
  const entry = dialbacks.add('a', client('a'));
  assert.match(entry.token, /^[0-9a-f]{32}$/);
  assert.equal(dialbacks.take(entry.token)?.owner, 'a');
  assert.equal(dialbacks.take(entry.token), undefined);
  assert.equal(dialbacks.take('f'.repeat(32)), undefined);
  assert.equal(dialbacks.size, 0);
});

test('each entry expires exactly its timeout after it was added, in order, with one timer for all', () => {
  const { clock, expired, dialbacks } = registry();
  dialbacks.add('first', client('first'));
  clock.advance(300);
  dialbacks.add('second', client('second'));
  clock.advance(300);
  const taken = dialbacks.add('taken', client('taken'));
  dialbacks.add('third', client('third'));
  assert.equal(clock.pendingTimers, 1);

  clock.advance(399);
  assert.deepEqual(expired, []);
  clock.advance(1);
  assert.deepEqual(expired, ['first']);
  clock.advance(299);
  assert.deepEqual(expired, ['first']);
  clock.advance(1);
  assert.deepEqual(expired, ['first', 'second']);
  assert.equal(dialbacks.take(taken.token)?.owner, 'taken');
  clock.advance(300);
  assert.deepEqual(expired, ['first', 'second', 'third']);
  assert.equal(dialbacks.size, 0);
  assert.equal(clock.pendingTimers, 0);
  // An expired token cannot be taken.
  assert.equal(dialbacks.take(taken.token), undefined);
});

test('a client added by an expiry callback gets its full timeout, and no second timer runs', () => {
  const clock = new ManualClock();
  const expired: PendingClient<string>[] = [];
  const dialbacks: DialbackRegistry<string> = new DialbackRegistry<string>(
    TIMEOUT_MS,
    (entry) => {
      expired.push(entry);
      // What a session does when a silent service's client goes back to the door and is offered again.
      if (entry.owner === 'a') dialbacks.add('again', client('again'));
    },
    clock,
  );
  dialbacks.add('a', client('a'));
  clock.advance(TIMEOUT_MS);
  assert.deepEqual(expired.map((e) => e.owner), ['a']);
  assert.equal(clock.pendingTimers, 1);
  clock.advance(TIMEOUT_MS - 1);
  assert.equal(expired.length, 1);
  clock.advance(1);
  assert.deepEqual(expired.map((e) => e.owner), ['a', 'again']);
  assert.equal(clock.pendingTimers, 0);
});

test('taking every entry leaves at most one idle wake-up, then no timer', () => {
  const { clock, expired, dialbacks } = registry();
  for (let i = 0; i < 100; i++) dialbacks.take(dialbacks.add(`c${i}`, client(`c${i}`)).token);
  assert.equal(clock.pendingTimers, 1);
  clock.advance(TIMEOUT_MS);
  assert.deepEqual(expired, []);
  assert.equal(clock.pendingTimers, 0);
});
