import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OptionsError, parseOptions } from '../../scripts/bench/options.js';
import { formatWanTable, summarise, type WanSample } from '../../scripts/bench/wan/report.js';

test('bench --wan: takes the presets, and refuses the loopback-only flags', () => {
  const smoke = parseOptions(['--wan', '--smoke']);
  assert.ok(smoke !== 'help');
  assert.equal(smoke.reps, 1);
  assert.ok(smoke.wan !== undefined && smoke.wan.firstCount > 0 && smoke.wan.connsCount >= smoke.wan.connsWorkers);
  const loopback = parseOptions(['--smoke']);
  assert.ok(loopback !== 'help' && loopback.wan === undefined);
  assert.throws(
    () => parseOptions(['--wan', '--only', 'relay']),
    (err: unknown) => err instanceof OptionsError && /--only does not apply to --wan/.test(err.message),
  );
});

const sample = (path: WanSample['path'], figure: WanSample['figure'], ...values: number[]): WanSample[] => values.map((value) => ({ path, figure, value }));

test('bench --wan report: medians over reps, ratios to haproxy for every row and to ssh -R for the relay rows', () => {
  const samples = [
    ...sample('haproxy', 'first-p50', 80, 84, 82),
    ...sample('haproxy', 'conns', 500, 520, 480),
    ...sample('relay', 'first-p50', 100, 120, 104),
    ...sample('relay', 'conns', 400, 390, 410),
    ...sample('relay', 'failed', 1, 2),
    ...sample('ssh -R', 'first-p50', 90, 90, 90),
    ...sample('ssh -R', 'conns', 200, 200, 200),
  ];
  const rows = summarise(samples, ['haproxy', 'relay', 'relay+auto', 'ssh -R']);
  assert.deepEqual(
    rows.map((r) => r.path),
    ['haproxy', 'relay', 'ssh -R'],
    'a path without samples has no row',
  );
  const relay = rows[1]!;
  assert.equal(relay.first_echo_p50_ms, 104);
  assert.deepEqual(relay.first_echo_p50_range, [100, 120]);
  assert.deepEqual(relay.conns_range, [390, 410]);
  assert.equal(relay.failed, 3);
  assert.equal(relay.first_echo_to_haproxy, 104 / 82);
  assert.equal(relay.conns_to_haproxy, 400 / 500);
  assert.equal(relay.first_echo_to_ssh, 104 / 90);
  assert.equal(relay.conns_to_ssh, 400 / 200);
  assert.equal(rows[0]!.first_echo_to_ssh, null, 'only relay rows are compared with ssh -R');
});

test('bench --wan report: the targets are checked on the row that runs the default settings', () => {
  const samples = [
    ...sample('haproxy', 'first-p50', 80),
    ...sample('haproxy', 'conns', 500),
    ...sample('relay', 'first-p50', 100),
    ...sample('relay', 'conns', 400),
    ...sample('relay+auto', 'first-p50', 60),
    ...sample('relay+auto', 'conns', 520),
    ...sample('ssh -R', 'first-p50', 120),
    ...sample('ssh -R', 'conns', 300),
  ];
  const rows = summarise(samples, ['haproxy', 'relay', 'relay+auto', 'ssh -R']);
  const withZero = formatWanTable(rows, '0');
  assert.match(withZero, /default settings \(relay\)/);
  assert.match(withZero, /first echo \/ haproxy: 1\.25× \(target ≤ 1\.1×: NOT met\)/);
  const withAuto = formatWanTable(rows, 'auto');
  assert.match(withAuto, /default settings \(relay\+auto\)/);
  assert.match(withAuto, /first echo \/ haproxy: 0\.75× \(target ≤ 1\.1×: met\)/);
  assert.match(withAuto, /time per short connection \/ ssh -R: 0\.58× \(target ≤ 0\.6×: met\)/);
  assert.match(formatWanTable(rows, '8'), /no row runs the default settings/);
});
