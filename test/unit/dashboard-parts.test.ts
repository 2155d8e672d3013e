import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, formatDuration, probeText, table } from '../../src/cli/status-table.js';
import { authorized, parseCredentials } from '../../src/monitor/basic-auth.js';
import { Overview, RECENT_LIMIT, type ListedService } from '../../src/monitor/overview.js';
import { NOT_PROBED, type ProbeStatus } from '../../src/monitor/probe-status.js';
import { Ring } from '../../src/monitor/ring.js';

const basic = (text: string): string => `Basic ${Buffer.from(text).toString('base64')}`;

test('ring: keeps the last items in order, newest first on request, and never grows', () => {
  const ring = new Ring<number>(3);
  assert.deepEqual(ring.toArray(), []);
  for (let i = 1; i <= 5; i++) ring.push(i);
  assert.deepEqual(ring.toArray(), [3, 4, 5]);
  assert.deepEqual(ring.newest(), [5, 4, 3]);
  assert.deepEqual(ring.newest(2), [5, 4]);
});

test('basic auth: only the exact USER:PASS passes; other schemes, garbage and near misses do not', () => {
  const expected = parseCredentials('ops:p:a:ss')!;
  assert.deepEqual(expected, { user: 'ops', password: 'p:a:ss' });
  assert.equal(authorized(basic('ops:p:a:ss'), expected), true);
  assert.equal(authorized(`basic   ${Buffer.from('ops:p:a:ss').toString('base64')}`, expected), true);
  for (const header of [undefined, '', 'Basic', basic('ops:p:a:s'), basic('ops:p:a:ss '), basic('Ops:p:a:ss'), 'Bearer x', `Basic ${'A'.repeat(5000)}`]) {
    assert.equal(authorized(header, expected), false, String(header));
  }
  for (const bad of ['', 'nocolon', ':pass', 'user:']) assert.equal(parseCredentials(bad), undefined, bad);
});

test('overview: per-service tunnels and bytes follow opens and closes, services are as the registrar lists them, recent lists are bounded', () => {
  const relayBytes = { a: 0, b: 0 };
  let listed: ListedService[] = [];
  const overview = new Overview(relayBytes, () => listed);
  const figures = overview.figuresFor('::1', 9001, undefined);
  const service: { id: string; port: number; waiting: number; probe: ProbeStatus; figures: typeof figures } = { id: 's1', port: 9001, waiting: 2, probe: NOT_PROBED, figures };
  listed = [{ service, held: false }];
  assert.deepEqual(overview.services()[0]!.probe, { state: 'not-probed', lastAt: null, latencyMs: null, failuresInARow: 0, reason: null });
  // Read from the service at request time, like `waiting`.
  service.probe = { state: 'failing', lastAt: 5, lastSeconds: 0.002, failuresInARow: 2, reason: 'no dial-back within 500 ms' };
  assert.deepEqual(overview.services()[0]!.probe, { state: 'failing', lastAt: 5, latencyMs: 2, failuresInARow: 2, reason: 'no dial-back within 500 ms' });
  // What a splice does with the totals it is given: add to each.
  const totals = overview.tunnelOpened(service);
  assert.equal(totals[0], relayBytes, "the relay's totals first");
  for (const counts of totals) {
    counts.a += 10;
    counts.b += 20;
  }
  assert.equal(overview.tunnelOpened(service), totals, 'one totals array per service, not per tunnel');
  overview.tunnelClosed(service, { client: '127.0.0.1:6', bytesFromClient: 0, bytesToClient: 0, durationMs: 1, closedBy: 'client', outcome: 'end' });
  let [view] = overview.services();
  assert.deepEqual([view!.publicAddress, view!.tunnelsOpen, view!.waiting, view!.bytesFromClients, view!.bytesToClients], ['[::1]:9001', 1, 2, 10, 20]);
  overview.tunnelClosed(service, { client: '127.0.0.1:5', bytesFromClient: 10, bytesToClient: 20, durationMs: 3, closedBy: 'service', outcome: 'end' });
  [view] = overview.services();
  assert.equal(view!.tunnelsOpen, 0);
  assert.deepEqual(
    overview.recentTunnels().map((r) => [r.service, r.publicPort, r.closedBy]),
    [
      ['s1', 9001, 'service'],
      ['s1', 9001, 'client'],
    ],
  );

  listed = [{ service, held: true }];
  assert.equal(overview.services()[0]!.held, true, 'away, with its port kept');
  listed = [];
  assert.deepEqual(overview.services(), []);
  for (let i = 0; i < RECENT_LIMIT + 10; i++) overview.refused('bad-line', { peer: '::ffff:10.0.0.1' }, `refusal ${i}`);
  const refusals = overview.recentRefusals();
  assert.equal(refusals.length, RECENT_LIMIT);
  assert.equal(refusals[0]!.message, `refusal ${RECENT_LIMIT + 9}`);
  assert.equal(refusals[0]!.peer, '10.0.0.1');
});

test('status table: columns line up and text from the network cannot send escape sequences to the terminal', () => {
  const text = table(
    ['A', 'LONGER', 'LAST'],
    [
      ['xx', 'y', 'z'],
      ['\u001b[31mred', 'line\nbreak', 'ok'],
    ],
  );
  assert.equal(text, 'A         LONGER      LAST\nxx        y           z\n?[31mred  line?break  ok');
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(50 * 1024 * 1024), '50 MiB');
  assert.equal(formatDuration(250), '250ms');
  assert.equal(formatDuration(61_000), '1m01s');
  assert.equal(formatDuration(3_725_000), '1h02m');
});

test('status table: a probe reads ok with its latency, failing with its reason, pending, or not probed (never failed)', () => {
  const view = { lastAt: 1, latencyMs: null, failuresInARow: 0, reason: null };
  assert.equal(probeText({ ...view, state: 'ok', latencyMs: 1.234 }), 'ok 1.2ms');
  assert.equal(probeText({ ...view, state: 'ok', latencyMs: 42.7 }), 'ok 43ms');
  assert.equal(probeText({ ...view, state: 'failing', failuresInARow: 3, reason: 'no dial-back within 500 ms' }), 'failing x3: no dial-back within 500 ms');
  assert.equal(probeText({ ...view, state: 'pending', lastAt: null }), 'pending');
  assert.equal(probeText({ ...view, state: 'not-probed', lastAt: null }), 'not probed');
});
