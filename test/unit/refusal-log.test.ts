import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { Logger } from '../../src/log.js';
import { RefusalLog } from '../../src/monitor/refusal-log.js';
import { ManualClock } from '../helpers/clock.js';

/** A warn-level logger whose lines are parsed as they are written, synchronously. */
function capture(): { lines: Record<string, unknown>[]; log: Logger } {
  const lines: Record<string, unknown>[] = [];
  const sink = { write: (line: string): void => void lines.push(JSON.parse(line) as Record<string, unknown>) };
  return { lines, log: pino({ level: 'warn' }, sink) as Logger };
}

test('refusal log: each refusal is one warn line until a flood, then a count instead of a line each', () => {
  const { lines, log } = capture();
  const clock = new ManualClock();
  const refusals = new RefusalLog(log, clock);
  for (let i = 0; i < 1000; i++) refusals.warn('binary', { peer: `10.0.0.${i % 250}` }, 'connection refused');
  assert.equal(lines.length, 20, 'at most 20 lines a second for one reason');
  assert.equal(lines[0]!['reason'], 'binary');
  assert.equal(lines[0]!['peer'], '10.0.0.0');
  assert.equal(clock.pendingTimers, 1, 'one summary for the whole flood');

  // Another reason has its own budget.
  refusals.warn('auth', {}, 'authentication failed');
  assert.equal(lines.length, 21);

  // A new window logs again (after the summary of the old one).
  clock.advance(1000);
  refusals.warn('binary', {}, 'connection refused');
  assert.equal(lines.length, 23);
  assert.equal(lines[21]!['suppressed'], 980);
  assert.equal(lines[22]!['msg'], 'connection refused');
});

test('refusal log: what was left out is summed up in one line when its second is over', () => {
  const { lines, log } = capture();
  const clock = new ManualClock();
  const refusals = new RefusalLog(log, clock);
  for (let i = 0; i < 25; i++) refusals.warn('limit', {}, 'over the limit');
  clock.advance(999);
  assert.equal(lines.length, 20, 'no summary before the second is over');
  clock.advance(1);
  const summary = lines[20];
  assert.ok(summary, 'a summary line arrived');
  assert.equal(summary['suppressed'], 5);
  assert.equal(summary['level'], 40, 'the summary is a warning too');
  assert.match(String(summary['msg']), /5 more refusals \(limit\)/);
  assert.equal(lines.length, 21);
});

test('refusal log: the summary comes when the window that began with the first refusal ends, not a second after the flood', () => {
  const { lines, log } = capture();
  const clock = new ManualClock();
  const refusals = new RefusalLog(log, clock);
  refusals.warn('limit', {}, 'over the limit');
  clock.advance(400);
  for (let i = 0; i < 24; i++) refusals.warn('limit', {}, 'over the limit');
  clock.advance(599);
  assert.equal(lines.length, 20);
  clock.advance(1);
  assert.equal(lines[20]?.['suppressed'], 5);
});
