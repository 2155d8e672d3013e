import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { TokenTable, type ClientOwner, type PendingClient, type ProbeOutcome } from '../../src/relay/tokens.js';
import { ManualClock } from '../helpers/clock.js';

const TIMEOUT_MS = 1000;
/** The registry only keeps the socket for its owner; no I/O happens on it here. */
const client = (name: string): Socket => ({ name }) as unknown as Socket;

/** Owners stand in for sessions: named, told nothing (the table's callback records expiries). */
type Owner = ClientOwner & { name: string };
const owners = new Map<string, Owner>();
const owner = (name: string): Owner => {
  let found = owners.get(name);
  if (found === undefined) owners.set(name, (found = { name, dialedBack: () => {}, dialbackExpired: () => {} }));
  return found;
};

function registry() {
  const clock = new ManualClock();
  const expired: string[] = [];
  const dialbacks = new TokenTable<Owner>(TIMEOUT_MS, (entry) => expired.push(entry.owner.name), clock);
  return { clock, expired, dialbacks };
}

test('a token is taken once; an unknown or used one is undefined', () => {
  const { dialbacks } = registry();
  const entry = dialbacks.addClient(owner('a'), client('a'));
  assert.match(entry.token, /^[0-9a-f]{32}$/);
  assert.equal(dialbacks.take(entry.token)?.kind, 'client');
  assert.equal(dialbacks.take(entry.token), undefined);
  assert.equal(dialbacks.take('f'.repeat(32)), undefined);
  assert.equal(dialbacks.size, 0);
});

test('each entry expires exactly its timeout after it was added, in order, with one timer for all', () => {
  const { clock, expired, dialbacks } = registry();
  dialbacks.addClient(owner('first'), client('first'));
  clock.advance(300);
  dialbacks.addClient(owner('second'), client('second'));
  clock.advance(300);
  const taken = dialbacks.addClient(owner('taken'), client('taken'));
  dialbacks.addClient(owner('third'), client('third'));
  assert.equal(clock.pendingTimers, 1);

  clock.advance(399);
  assert.deepEqual(expired, []);
  clock.advance(1);
  assert.deepEqual(expired, ['first']);
  clock.advance(299);
  assert.deepEqual(expired, ['first']);
  clock.advance(1);
  assert.deepEqual(expired, ['first', 'second']);
  assert.equal(dialbacks.take(taken.token)?.token, taken.token);
  clock.advance(300);
  assert.deepEqual(expired, ['first', 'second', 'third']);
  assert.equal(dialbacks.size, 0);
  assert.equal(clock.pendingTimers, 0);
  // An expired token cannot be taken.
  assert.equal(dialbacks.take(taken.token), undefined);
});

test('a client added by an expiry callback gets its full timeout, and no second timer runs', () => {
  const clock = new ManualClock();
  const expired: PendingClient<Owner>[] = [];
  const dialbacks: TokenTable<Owner> = new TokenTable<Owner>(
    TIMEOUT_MS,
    (entry) => {
      expired.push(entry);
      // What a session does when a silent service's client goes back to the door and is offered again.
      if (entry.owner.name === 'a') dialbacks.addClient(owner('again'), client('again'));
    },
    clock,
  );
  dialbacks.addClient(owner('a'), client('a'));
  clock.advance(TIMEOUT_MS);
  assert.deepEqual(
    expired.map((e) => e.owner.name),
    ['a'],
  );
  assert.equal(clock.pendingTimers, 1);
  clock.advance(TIMEOUT_MS - 1);
  assert.equal(expired.length, 1);
  clock.advance(1);
  assert.deepEqual(
    expired.map((e) => e.owner.name),
    ['a', 'again'],
  );
  assert.equal(clock.pendingTimers, 0);
});

test('taking every entry leaves at most one idle wake-up, then no timer', () => {
  const { clock, expired, dialbacks } = registry();
  for (let i = 0; i < 100; i++) dialbacks.take(dialbacks.addClient(owner(`c${i}`), client(`c${i}`)).token);
  assert.equal(clock.pendingTimers, 1);
  clock.advance(TIMEOUT_MS);
  assert.deepEqual(expired, []);
  assert.equal(clock.pendingTimers, 0);
});

test('probes share the table and the timer: a probe token is never a client, and expires as a failed probe', () => {
  const { clock, expired, dialbacks } = registry();
  const outcomes: ProbeOutcome[] = [];
  const waiting = dialbacks.addClient(owner('a'), client('a'));
  const probe = dialbacks.addProbe((outcome) => outcomes.push(outcome));
  assert.equal(clock.pendingTimers, 1);
  assert.equal(dialbacks.clientsOf(owner('a')), 1, "a probe is nobody's waiting client");
  assert.equal(dialbacks.take(probe.token)?.kind, 'probe');
  const late = dialbacks.addProbe((outcome) => outcomes.push(outcome));
  clock.advance(TIMEOUT_MS);
  assert.deepEqual(expired, ['a']);
  assert.deepEqual(outcomes, [{ ok: false, reason: `no dial-back within ${TIMEOUT_MS} ms` }]);
  assert.equal(dialbacks.take(late.token), undefined);
  assert.equal(dialbacks.take(waiting.token), undefined);
});

test('a departing owner takes exactly its own waiting clients, oldest first', () => {
  const { dialbacks } = registry();
  const first = dialbacks.addClient(owner('x'), client('x1'));
  dialbacks.addClient(owner('y'), client('y1'));
  const second = dialbacks.addClient(owner('x'), client('x2'));
  assert.deepEqual(dialbacks.takeClientsOf(owner('x')), [first, second]);
  assert.equal(dialbacks.clientsOf(owner('x')), 0);
  assert.equal(dialbacks.clientsOf(owner('y')), 1);
  assert.equal(dialbacks.take(first.token), undefined, 'taken tokens are dead');
  assert.equal(dialbacks.size, 1);
});
