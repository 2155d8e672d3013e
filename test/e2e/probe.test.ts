import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceView } from '../../src/monitor/overview.js';
import { getJson } from '../helpers/dashboard.js';
import { dataGate } from '../helpers/data-gate.js';
import { dial, echoThrough, eventually, listenLocal, portsFlag } from '../helpers/net.js';
import { countLines } from '../helpers/observe.js';
import { startRelay, startService } from '../helpers/processes.js';

/** Polls /metrics until `name` satisfies `ok` (15 s at most); the last value. */
async function metricUntil(url: string, name: string, ok: (value: number) => boolean, what: string): Promise<number> {
  let value = Number.NaN;
  await eventually(
    async () => {
      const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(url)).text());
      value = match === null ? Number.NaN : Number(match[1]);
      return match !== null && ok(value);
    },
    15_000,
    what,
  );
  return value;
}

test('probe: ./expose behind a data port that refuses it is reported failing once by ./relay --probe, and ok once when it recovers; its target never sees a probe', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--probe', '0.2', '--dialback-timeout', '0.5', '--metrics', '127.0.0.1:0']);
  const metrics = (await relay.waitFor('stderr', /"metrics":"(http:[^"]+)"/))[1]!;
  const gate = await dataGate(t, relay.port, relay.dataPort);
  let accepted = 0;
  const target = await listenLocal(t, (socket) => {
    accepted++;
    socket.pipe(socket);
  });
  const expose = await startService(t, 'expose', ['127.0.0.1', String(gate.controlPort), String(target.port)]);

  await metricUntil(metrics, 'relay_service_probe_seconds_count', (n) => n >= 1, 'a first successful probe');
  gate.shut();
  await relay.waitFor('stderr', /"msg":"probe failed/);
  await expose.waitFor('stderr', /probe dial-back failed/);
  await metricUntil(metrics, 'relay_service_probe_failures_total', (n) => n >= 3, 'three failed probes');
  assert.equal(await metricUntil(metrics, 'relay_services_probe_failing', () => true, 'the failing gauge'), 1);
  // The dashboard's API says so too, with the reason.
  const [failing] = await getJson<ServiceView[]>(metrics, 'api/services');
  assert.equal(failing?.probe.state, 'failing');
  assert.match(failing.probe.reason ?? '', /^no dial-back within 500 ms$/);
  assert.ok(failing.probe.failuresInARow >= 3 && failing.probe.latencyMs !== null, JSON.stringify(failing.probe));

  gate.open();
  await relay.waitFor('stderr', /"msg":"probe ok again/);
  const succeeded = await metricUntil(metrics, 'relay_service_probe_seconds_count', () => true, 'the probe count');
  await metricUntil(metrics, 'relay_service_probe_seconds_count', (n) => n >= succeeded + 2, 'two more successful probes');
  assert.equal(countLines(relay.stderr, /"msg":"probe failed/), 1);
  assert.equal(countLines(relay.stderr, /"msg":"probe ok again/), 1);
  assert.equal(countLines(expose.stderr, /probe dial-back failed/), 1);
  assert.equal(await metricUntil(metrics, 'relay_services_probe_failing', () => true, 'the failing gauge'), 0);
  const [recovered] = await getJson<ServiceView[]>(metrics, 'api/services');
  assert.deepEqual([recovered?.probe.state, recovered?.probe.failuresInARow, recovered?.probe.reason], ['ok', 0, null]);
  // One registration throughout: the control connection never broke.
  assert.equal(expose.stdout.length, 1);

  assert.equal(accepted, 0, 'no probe reached the target');
  const client = await dial(t, expose.publicPort);
  assert.equal((await echoThrough(client, Buffer.from('a real client'))).toString(), 'a real client');
  assert.equal(accepted, 1);
});
