import { test } from 'node:test';
import assert from 'node:assert/strict';
import { overviewSnapshot } from '../../src/monitor/api.js';
import { renderMetrics } from '../../src/monitor/metrics.js';
import { Overview } from '../../src/monitor/overview.js';
import { RelayStats } from '../../src/monitor/stats.js';
import { mergeMetricsText, mergeSnapshots, type WorkerSnapshot } from '../../src/monitor/workers-view.js';

function worker(configure: (stats: RelayStats) => void): WorkerSnapshot {
  const stats = new RelayStats();
  configure(stats);
  return {
    overview: overviewSnapshot(stats, new Overview(stats.bytes, () => [])),
    metrics: renderMetrics(stats),
    dialback: { counts: [...stats.dialbackCounts], sumSeconds: stats.dialbackSumSeconds },
  };
}

test('workers view: counters are summed by series, each family appears once, in order', () => {
  const a = '# HELP x_total X.\n# TYPE x_total counter\nx_total{reason="a"} 1\nx_total{reason="b"} 2\n# HELP g G.\n# TYPE g gauge\ng 5\n';
  const b = '# HELP x_total X.\n# TYPE x_total counter\nx_total{reason="b"} 3\nx_total{reason="c"} 4\n# HELP g G.\n# TYPE g gauge\ng 7\n';
  assert.equal(mergeMetricsText([a, b]), '# HELP x_total X.\n# TYPE x_total counter\nx_total{reason="a"} 1\nx_total{reason="b"} 5\nx_total{reason="c"} 4\n# HELP g G.\n# TYPE g gauge\ng 12\n');
});

test("workers view: the relay's start is its oldest worker's, the fleet's size is not summed", () => {
  const text = (start: number, nodes: number): string =>
    `# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds ${start}\n# TYPE relay_worker_start_time_seconds gauge\nrelay_worker_start_time_seconds ${start}\n# TYPE relay_fleet_nodes gauge\nrelay_fleet_nodes ${nodes}\n`;
  const merged = mergeMetricsText([text(100, 3), text(50, 3)]);
  assert.match(merged, /^process_start_time_seconds 50$/m);
  assert.match(merged, /^relay_worker_start_time_seconds 100$/m);
  assert.match(merged, /^relay_fleet_nodes 3$/m);
});

test('workers view: the overview adds up the workers, dial-back quantiles from the summed histogram', () => {
  const one = worker((stats) => {
    stats.tunnelsOpened = 3;
    stats.refused('hold-timeout');
    for (let i = 0; i < 99; i++) stats.observeDialback(0.001);
  });
  const two = worker((stats) => {
    stats.tunnelsOpened = 4;
    stats.refused('hold-timeout');
    stats.refused('pending');
    stats.observeDialback(2);
  });
  const merged = mergeSnapshots(one, [two], new RelayStats().dialbackBuckets);
  const relay = merged.overview.relay;
  assert.equal(relay.tunnelsOpened, 7);
  assert.equal(relay.workers, 2);
  assert.deepEqual(relay.refusals, { 'hold-timeout': 2, pending: 1 });
  assert.equal(relay.dialback.count, 100);
  assert.equal(relay.dialback.p50Ms, 1);
  assert.equal(relay.dialback.p99Ms, 1);
  assert.match(merged.metrics, /^relay_tunnels_opened_total 7$/m);
  assert.match(merged.metrics, /^relay_dialback_seconds_count 100$/m);
  assert.match(merged.metrics, /^relay_workers 2$/m);
});

test("workers view: a fleet node's view lists a peer any worker has seen; etcd is reachable only if every worker reaches it", () => {
  const view = (peers: string[], reachable: boolean, lastErrorAt: number | null) => ({
    node: 'n1',
    address: '10.0.0.1:7000',
    peers,
    etcd: { reachable, lastError: lastErrorAt === null ? null : `failed at ${lastErrorAt}`, lastErrorAt },
  });
  const one = worker(() => {});
  const two = worker(() => {});
  one.overview.fleet = view(['10.0.0.2:7000'], true, 5);
  two.overview.fleet = view(['10.0.0.3:7000', '10.0.0.2:7000'], false, 9);
  const fleet = mergeSnapshots(one, [two], new RelayStats().dialbackBuckets).overview.fleet;
  assert.deepEqual(fleet, view(['10.0.0.2:7000', '10.0.0.3:7000'], false, 9));
});
