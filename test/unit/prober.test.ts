import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import type { Logger } from '../../src/log.js';
import type { Feature } from '../../src/protocol/messages.js';
import { startProber } from '../../src/relay/prober.js';
import { TokenTable } from '../../src/relay/tokens.js';
import { RelayStats } from '../../src/monitor/stats.js';
import { ManualClock } from '../helpers/clock.js';

const INTERVAL = 30_000;
const TIMEOUT = 10_000;

function setUp(features: Feature[] = ['probe'], probeIntervalMs = INTERVAL) {
  const clock = new ManualClock();
  const stats = new RelayStats();
  const tokens = new TokenTable<never>(TIMEOUT, () => {}, clock);
  const messages: string[] = [];
  const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _e, done) => (messages.push(String(JSON.parse(chunk.toString()).msg)), done()) })) as Logger;
  const sent: string[] = [];
  const prober = startProber({ clock, stats, tokens, options: { probeIntervalMs } }, new Set(features), log, (token) => sent.push(token));
  /** The service dials back with `token` (the latest by default), as the data port would see it. */
  const answer = (token = sent.at(-1)!): boolean => {
    const entry = tokens.take(token);
    if (entry?.kind !== 'probe') return false;
    entry.settle({ ok: true, seconds: tokens.secondsWaited(entry) });
    return true;
  };
  return { clock, stats, tokens, messages, sent, prober, answer };
}

test('prober: not probed without the feature or with probes off', () => {
  assert.equal(setUp([]).prober, undefined);
  assert.equal(setUp(['probe'], 0).prober, undefined);
});

test('prober: one PROBE per interval, pending until answered, then ok with its latency', () => {
  const { clock, stats, sent, prober, answer } = setUp();
  assert.equal(prober?.status.state, 'pending');
  clock.advance(INTERVAL - 1);
  assert.equal(sent.length, 0);
  clock.advance(1);
  assert.equal(sent.length, 1);
  assert.ok(answer());
  assert.equal(prober?.status.state, 'ok');
  assert.ok((prober?.status.lastSeconds ?? -1) >= 0);
  assert.equal(stats.probeCount, 1);
  clock.advance(INTERVAL);
  assert.equal(sent.length, 2);
  assert.notEqual(sent[0], sent[1], 'a new token every time');
});

test('prober: failures are counted every time but logged once per change of state', () => {
  const { clock, stats, messages, sent, prober, answer } = setUp();
  clock.advance(INTERVAL);
  answer();
  // Each probe times out after TIMEOUT; the next is due INTERVAL after the previous one was sent.
  for (let i = 0; i < 4; i++) clock.advance(INTERVAL);
  assert.equal(stats.probeFailures, 3);
  assert.equal(prober?.status.state, 'failing');
  assert.equal(prober?.status.failuresInARow, 3);
  assert.equal(stats.servicesProbeFailing, 1);
  assert.equal(messages.filter((m) => m.startsWith('probe failed')).length, 1);
  assert.equal(sent.length, 5, 'one probe outstanding at a time');
  assert.ok(answer());
  assert.equal(prober?.status.state, 'ok');
  assert.equal(stats.servicesProbeFailing, 0);
  assert.equal(messages.filter((m) => m.startsWith('probe ok again')).length, 1);
});

test('prober: a probe token is single use and dies at the timeout; stop() forgets the outstanding probe', () => {
  const { clock, stats, sent, prober, answer } = setUp();
  clock.advance(INTERVAL);
  assert.ok(answer());
  assert.equal(answer(), false, 'used');
  clock.advance(INTERVAL + TIMEOUT); // the second probe went out and expired
  assert.equal(answer(), false, 'expired');
  clock.advance(INTERVAL - TIMEOUT); // the third goes out
  assert.equal(sent.length, 3);
  prober?.stop();
  assert.equal(answer(sent.at(-1)!), false, 'forgotten on stop');
  clock.advance(10 * INTERVAL);
  assert.equal(stats.probeFailures, 1, 'only the expired one failed; nothing after stop');
  assert.equal(stats.servicesProbeFailing, 0, 'a stopped failing service no longer counts as failing');
});
