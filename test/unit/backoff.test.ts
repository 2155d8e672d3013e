import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, type BackoffPolicy } from '../../src/client/backoff.js';

const NO_JITTER: BackoffPolicy = { initialMs: 100, maxMs: 10_000, jitter: 0 };
const JITTER: BackoffPolicy = { initialMs: 100, maxMs: 10_000, jitter: 0.3 };

test('the reconnect delay starts at initialMs and doubles with each attempt', () => {
  const delays = [0, 1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(attempt, NO_JITTER, () => 0.5));
  assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 6400]);
});

test('the reconnect delay stops growing at maxMs', () => {
  assert.equal(
    backoffDelay(7, NO_JITTER, () => 0.5),
    10_000,
    '12800 is capped',
  );
  assert.equal(
    backoffDelay(8, NO_JITTER, () => 0.5),
    10_000,
  );
  assert.equal(
    backoffDelay(50, NO_JITTER, () => 0.5),
    10_000,
  );
  assert.equal(backoffDelay(0, { initialMs: 5000, maxMs: 1000, jitter: 0 }), 1000, 'a first delay above the cap is capped too');
});

test('jitter spreads the delay by at most the jitter fraction either way', () => {
  // attempt 3: 800 ms before jitter
  assert.equal(
    backoffDelay(3, JITTER, () => 0),
    560,
  );
  assert.equal(
    backoffDelay(3, JITTER, () => 0.5),
    800,
  );
  assert.equal(
    backoffDelay(3, JITTER, () => 1),
    1040,
  );
  // at the cap the spread is below maxMs only: maxMs is a promise to the operator
  assert.equal(
    backoffDelay(20, JITTER, () => 0),
    7000,
  );
  assert.equal(
    backoffDelay(20, JITTER, () => 0.5),
    10_000,
  );
  assert.equal(
    backoffDelay(20, JITTER, () => 1),
    10_000,
  );

  for (let attempt = 0; attempt < 12; attempt++) {
    const base = Math.min(JITTER.maxMs, JITTER.initialMs * 2 ** attempt);
    for (let r = 0; r < 1; r += 0.01) {
      const delay = backoffDelay(attempt, JITTER, () => r);
      assert.ok(Number.isInteger(delay), `${delay} is whole milliseconds`);
      assert.ok(delay >= Math.floor(base * 0.7) && delay <= Math.min(JITTER.maxMs, Math.ceil(base * 1.3)), `attempt ${attempt}, random ${r}: ${delay}`);
    }
  }
});

test('jitter actually varies the delay, so services do not reconnect in step', () => {
  const seen = new Set<number>();
  for (const r of [0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999]) seen.add(backoffDelay(4, JITTER, () => r));
  assert.equal(seen.size, 7);
});

test('a delay is never negative, even with jitter of 1', () => {
  assert.equal(
    backoffDelay(0, { initialMs: 100, maxMs: 1000, jitter: 1 }, () => 0),
    0,
  );
  assert.equal(
    backoffDelay(0, { initialMs: 100, maxMs: 1000, jitter: 1 }, () => 1),
    200,
  );
});

test('a very large attempt number neither overflows nor stops being capped', () => {
  for (const attempt of [31, 100, 1000, 1_000_000, Number.MAX_SAFE_INTEGER]) {
    assert.equal(
      backoffDelay(attempt, NO_JITTER, () => 0.5),
      10_000,
      `attempt ${attempt}`,
    );
    const jittered = backoffDelay(attempt, JITTER, () => 0.99);
    assert.ok(Number.isFinite(jittered) && jittered <= 13_000 && jittered >= 7000, `attempt ${attempt}: ${jittered}`);
  }
  // Even with no practical cap, a huge attempt number gives a finite delay, not Infinity or NaN.
  const huge = backoffDelay(1000, { initialMs: 1, maxMs: Number.MAX_SAFE_INTEGER, jitter: 0 });
  assert.ok(Number.isFinite(huge) && huge > 0, String(huge));
});

test('a maxMs beyond what setTimeout can wait is clamped instead of firing at once', () => {
  assert.equal(backoffDelay(40, { initialMs: 1000, maxMs: 2 ** 40, jitter: 0 }), 2 ** 31 - 1);
});
