import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from '../../src/log.js';
import { RefusalLog } from '../../src/monitor/refusal-log.js';

function capture(): { lines: Record<string, unknown>[]; log: Logger } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { lines, log: pino({ level: 'warn' }, sink) as Logger };
}

test('refusal log: each refusal is one warn line until a flood, then a count instead of a line each', async () => {
  const { lines, log } = capture();
  let now = 0;
  const refusals = new RefusalLog(log, () => now);
  for (let i = 0; i < 1000; i++) refusals.warn('binary', { peer: `10.0.0.${i % 250}` }, 'connection refused');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(lines.length, 20, 'at most 20 lines a second for one reason');
  assert.equal(lines[0]!['reason'], 'binary');
  assert.equal(lines[0]!['peer'], '10.0.0.0');

  // Another reason has its own budget.
  refusals.warn('auth', {}, 'authentication failed');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(lines.length, 21);

  // A new window logs again.
  now = 1000;
  refusals.warn('binary', {}, 'connection refused');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(lines.length, 22);
});

test('refusal log: what was left out is summed up in one line when its second is over', async () => {
  const { lines, log } = capture();
  const refusals = new RefusalLog(log, () => 0);
  for (let i = 0; i < 25; i++) refusals.warn('limit', {}, 'over the limit');
  // The summary timer is real (unref'd); it fires within about a second.
  const deadline = Date.now() + 3000;
  while (lines.length < 21 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  const summary = lines[20];
  assert.ok(summary, 'a summary line arrived');
  assert.equal(summary['suppressed'], 5);
  assert.match(String(summary['msg']), /5 more refusals \(limit\)/);
});
