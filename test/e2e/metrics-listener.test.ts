import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getWithHost, relayCommand, relayWithDashboard } from '../helpers/dashboard.js';

const port = (base: string): number => Number(new URL(base).port);

test('relay --metrics-host: the listener answers its own address and the names given, 421 for any other Host; no exposure warning on loopback', async (t) => {
  const relay = await relayWithDashboard(t, ['--metrics-host', 'dash.example,[2001:db8::7]']);
  for (const host of [new URL(relay.base).host, 'localhost', 'dash.example:443', 'DASH.example', '[2001:db8::7]:9100']) {
    assert.equal((await getWithHost(port(relay.base), host, '/api/overview')).status, 200, `Host: ${host}`);
  }
  const refused = await getWithHost(port(relay.base), 'rebound.attacker.example:9100', '/api/overview');
  assert.equal(refused.status, 421);
  assert.equal(refused.body.split('\n').length, 2, 'one line of text');
  await relay.waitFor('stderr', /"host":"rebound\.attacker\.example:9100".*"msg":"metrics: refused a request for a host name/);
  assert.equal(relay.stderr.filter((line) => line.includes('without --metrics-auth')).length, 0);
  const status = await relayCommand(['status', '--metrics', new URL(relay.base).host]);
  assert.equal(status.code, 0, status.stderr);
});

test('relay --metrics-host from RELAY_METRICS_HOST, as every flag', async (t) => {
  const relay = await relayWithDashboard(t, [], { RELAY_METRICS_HOST: 'from-env.example' });
  assert.equal((await getWithHost(port(relay.base), 'from-env.example', '/healthz')).status, 200);
  assert.equal((await getWithHost(port(relay.base), 'other.example', '/healthz')).status, 421);
});

test('relay --metrics-host: without --metrics, or with a port or a malformed name, a usage error (exit 2)', async () => {
  const alone = await relayCommand(['0', '--ports', '40000-40010', '--metrics-host', 'dash.example']);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /^relay: --metrics-host needs --metrics /);
  for (const bad of ['dash.example:9100', 'two words', 'a,,b', 'abc:9100']) {
    const result = await relayCommand(['0', '--ports', '40000-40010', '--metrics', '127.0.0.1:0', '--metrics-host', bad]);
    assert.equal(result.code, 2, bad);
    assert.match(result.stderr, /^relay: --metrics-host must be NAME\[,NAME\.\.\.\] \(host names or addresses, no port\), got "[^"]*"/, bad);
  }
});
