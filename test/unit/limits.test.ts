import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveLimits, FALLBACK_LIMITS, parseFdLimit } from '../../src/config/limits.js';
import { loweredWarning, machineBoundValue, type Lowered } from '../../src/config/rules.js';
import { UsageError } from '../../src/errors.js';

const GiB = 2 ** 30;

test('limits: ulimit -n 1024 leaves 128 descriptors spare and gives 2 per tunnel', () => {
  const limits = deriveLimits({ fdLimit: 1024, memoryBytes: 16 * GiB });
  assert.deepEqual({ ...limits, basis: undefined }, { maxClientsPerService: 448, maxPendingPerService: 448, maxTunnels: 448, maxWarmTotal: 64, basis: undefined, measured: true });
  assert.match(limits.basis, /open-file limit 1024/);
});

test('limits: a container hard limit of a million is bounded by memory, not by descriptors', () => {
  const limits = deriveLimits({ fdLimit: 1_048_576, memoryBytes: 1 * GiB });
  // A quarter of 1 GiB at 64 KiB a tunnel.
  assert.equal(limits.maxTunnels, 4096);
  assert.match(limits.basis, /memory 1\.0 GiB/);
  const big = deriveLimits({ fdLimit: 1_048_576, memoryBytes: 64 * GiB });
  assert.equal(big.maxTunnels, 262_144);
  // Descriptors still bound a machine with plenty of memory: 1/8 kept back for control and warm connections.
  assert.equal(deriveLimits({ fdLimit: 1_048_576, memoryBytes: 1024 * GiB }).maxTunnels, (1_048_576 - 131_072) / 2);
});

test('limits: one service may use the whole global cap, and the cap grows with the limit', () => {
  let previous = 0;
  for (const fdLimit of [256, 1024, 4096, 65_536, 1_048_576]) {
    const limits = deriveLimits({ fdLimit, memoryBytes: 1024 * GiB });
    assert.equal(limits.maxClientsPerService, limits.maxTunnels);
    assert.ok(limits.maxTunnels * 2 < fdLimit, `${fdLimit}: ${limits.maxTunnels} tunnels leave no headroom`);
    assert.ok(limits.maxTunnels > previous);
    previous = limits.maxTunnels;
  }
});

test('limits: a tiny limit still gives a usable floor; an unknown one keeps the old fixed defaults', () => {
  assert.equal(deriveLimits({ fdLimit: 20, memoryBytes: GiB }).maxTunnels, 16);
  assert.equal(deriveLimits({ fdLimit: undefined, memoryBytes: GiB }), FALLBACK_LIMITS);
  assert.equal(FALLBACK_LIMITS.maxClientsPerService, 4096);
});

test('limits: the soft open-file limit is read from /proc/PID/limits', () => {
  const text = [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max processes             95325                95325                processes ',
    'Max open files            1024                 524288               files     ',
  ].join('\n');
  assert.equal(parseFdLimit(text), 1024);
  assert.equal(parseFdLimit(text.replace('1024 ', 'unlimited')), undefined);
  assert.equal(parseFdLimit(''), undefined);
});

test('limits: a client limit above the measured one is lowered to it and named as written; an unknown limit lowers nothing', () => {
  const limits = deriveLimits({ fdLimit: 1024, memoryBytes: 16 * GiB });
  const lowered: Lowered[] = [];
  assert.equal(machineBoundValue('maxClientsPerService', '1e12', limits, lowered), 448);
  assert.equal(machineBoundValue('maxTunnels', '99999999999999999999', limits, lowered), 448);
  assert.equal(machineBoundValue('maxPendingPerService', 448, limits, lowered), 448);
  assert.equal(machineBoundValue('maxPendingPerService', '12', limits, lowered), 12);
  assert.deepEqual(lowered, [
    { written: '--max-clients 1e12', to: 448 },
    { written: '--max-tunnels 99999999999999999999', to: 448 },
  ]);
  assert.equal(
    loweredWarning(lowered, limits),
    '--max-clients 1e12 and --max-tunnels 99999999999999999999 are above what this machine can hold (derived from open-file limit 1024): using 448 and 448 instead; raise the open-file limit (ulimit -n) or the memory limit to allow more',
  );
  assert.equal(loweredWarning([], limits), undefined);
  // Not a whole number, or below the minimum: refused as before, quoting what was written.
  assert.throws(
    () => machineBoundValue('maxTunnels', '1e12.5', limits, []),
    (err) => err instanceof UsageError && /got "1e12.5"/.test(err.message),
  );
  assert.throws(() => machineBoundValue('maxTunnels', '0', limits, []), /--max-tunnels must be a whole number from 1 up, got "0"/);
  const none: Lowered[] = [];
  assert.equal(machineBoundValue('maxTunnels', '100000', FALLBACK_LIMITS, none), 100_000);
  assert.deepEqual(none, []);
});
