import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RelayStats } from '../../src/monitor/stats.js';

/** A worker's stats with some of everything counted. */
function busy(scale: number): RelayStats {
  const stats = new RelayStats();
  stats.tunnelsOpened = 10 * scale;
  stats.servicesRegistered = scale;
  stats.bytes.a = 1000 * scale;
  stats.bytes.b = 2000 * scale;
  stats.refused('tunnels');
  stats.observeDialback(0.002);
  stats.observeProbe(0.02);
  stats.probeFailures = scale;
  return stats;
}

test('a successor carries on the counters of the worker it replaced: bytes, tunnels, refusals, histograms', () => {
  const old = busy(1);
  const next = busy(2);
  next.carryOver(old.figuresToCarry());
  assert.equal(next.tunnelsOpened, 30);
  assert.equal(next.servicesRegistered, 3);
  assert.deepEqual([next.bytesFromClients, next.bytesToClients], [3000, 6000]);
  assert.deepEqual([next.bytes.a, next.bytes.b], [2000, 4000], 'its own live bytes (whose rate the dashboard samples) stay its own');
  assert.equal(next.refusals.get('tunnels'), 2);
  assert.equal(next.dialbackCount, 2);
  assert.equal(next.dialbackCounts[1], 2, 'the dial-back histogram adds bucket by bucket');
  assert.equal(next.probeCount, 2);
  assert.equal(next.probeFailures, 3);
});

test('figures carried twice, or once directly and once through a later worker, are counted once', () => {
  const a = busy(1);
  const b = busy(1);
  b.carryOver(a.figuresToCarry());
  // a drains on: its tunnels move more bytes, and it says so once more when it exits.
  a.bytes.a += 500;
  b.carryOver(a.figuresToCarry());
  assert.equal(b.bytesFromClients, 2500);
  // b is upgraded before a has finished; a's last word then reaches c.
  const c = new RelayStats();
  c.carryOver(b.figuresToCarry());
  a.bytes.a += 100;
  c.carryOver(a.figuresToCarry());
  c.carryOver(b.figuresToCarry());
  assert.equal(c.bytesFromClients, 2600);
  assert.equal(c.tunnelsOpened, 20);
  assert.equal(c.refusals.get('tunnels'), 2);
});

test('a worker never counts its own figures twice, and starts its uptime from the start it is given', () => {
  const stats = busy(1);
  stats.carryOver(stats.figuresToCarry());
  assert.equal(stats.tunnelsOpened, 10);
  assert.equal(stats.startedAt, stats.processStartedAt, 'alone, the relay started with its process');
  stats.startedAt = 1_700_000_000;
  assert.notEqual(stats.startedAt, stats.processStartedAt);
});
