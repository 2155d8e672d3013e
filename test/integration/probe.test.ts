import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { renderMetrics } from '../../src/monitor/metrics.js';
import { Relay } from '../../src/index.js';
import { dataGate } from '../helpers/data-gate.js';
import { dial, echoThrough, eventually, portBlock } from '../helpers/net.js';
import { dialData, registerRaw } from '../helpers/protocol.js';
import { inProcessRelay, relayed } from '../helpers/relay.js';
import { capturedLog } from '../helpers/log.js';

const said = (records: Record<string, unknown>[], fragment: string): number => records.filter((r) => String(r['msg']).includes(fragment)).length;

function onlyService(relay: Relay) {
  assert.equal(relay.services.size, 1);
  return [...relay.services][0]!;
}

function metric(relay: Relay, name: string): number {
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(renderMetrics(relay.stats));
  assert.ok(match, `no ${name} in the metrics`);
  return Number(match[1]);
}

test('probe: a service whose dial-backs are blocked while its control connection is healthy fails its probe, logged once, and recovers, logged once', async (t) => {
  const { logger, records } = capturedLog();
  const relay = new Relay({ port: 0, ports: portBlock(), probeIntervalMs: 100, dialbackTimeoutMs: 300 }, logger);
  await relay.start();
  t.after(() => relay.shutdown(0));
  const gate = await dataGate(t, relay.controlPort, relay.dataPort);
  let delivered = 0;
  const target = (socket: Socket): void => {
    delivered++;
    socket.pipe(socket);
  };
  const disconnects: string[] = [];
  const { tunnel, port } = await relayed(t, relay, target, { port: gate.controlPort });
  tunnel.on('disconnected', (reason: string) => disconnects.push(reason));
  const session = onlyService(relay);
  assert.deepEqual(session.features.has('probe'), true);

  await eventually(() => session.probe.state === 'ok', 5000, 'a first probe to succeed');
  assert.ok((session.probe.lastSeconds ?? -1) >= 0);
  assert.ok(relay.stats.probeCount >= 1);

  gate.shut();
  await eventually(() => relay.stats.probeFailures >= 3, 10_000, 'three probes to fail');
  assert.equal(session.probe.state, 'failing');
  assert.ok(session.probe.failuresInARow >= 3);
  assert.match(session.probe.reason ?? '', /no dial-back within 300 ms/);
  assert.equal(said(records, 'probe failed'), 1, 'one warning for the whole failing spell');
  assert.equal(metric(relay, 'relay_services_probe_failing'), 1);
  assert.ok(metric(relay, 'relay_service_probe_failures_total') >= 3);
  // The control connection never noticed: same registration, same session.
  assert.deepEqual(disconnects, []);
  assert.equal(onlyService(relay), session);

  gate.open();
  await eventually(() => session.probe.state === 'ok', 5000, 'the probe to succeed again');
  assert.equal(said(records, 'probe ok again'), 1);
  assert.equal(metric(relay, 'relay_services_probe_failing'), 0);
  assert.equal(session.probe.failuresInARow, 0);
  const okBefore = relay.stats.probeCount;
  await eventually(() => relay.stats.probeCount >= okBefore + 2, 5000, 'two more probes');
  assert.equal(said(records, 'probe failed'), 1);
  assert.equal(said(records, 'probe ok again'), 1);
  assert.match(renderMetrics(relay.stats), /^relay_service_probe_seconds_count \d+$/m);

  // Probes never reached the application; a real client does.
  assert.equal(delivered, 0);
  const client = await dial(t, port);
  assert.equal((await echoThrough(client, Buffer.from('after the probes'))).toString(), 'after the probes');
  assert.equal(delivered, 1);
});

test('probe: a service that did not list probe is never sent PROBE, stays registered and shows as not probed', async (t) => {
  const relay = await inProcessRelay(t, { probeIntervalMs: 50 });
  const { control: old } = await registerRaw(t, relay.controlPort);
  // A probed neighbour on the same relay shows that probes are going out meanwhile.
  await relayed(t, relay, (socket: Socket) => socket.destroy());
  await eventually(() => relay.stats.probeCount >= 3, 5000, 'the neighbour to be probed three times');
  assert.deepEqual(
    old.lines.filter((line) => line.startsWith('PROBE')),
    [],
  );
  assert.equal(old.ended, undefined);
  const states = [...relay.services].map((session) => session.probe.state).sort();
  assert.deepEqual(states, ['not-probed', 'ok']);
  assert.equal(relay.stats.probeFailures, 0);
});

test('probe: with --probe 0 nobody is probed, even a service that lists it', async (t) => {
  const relay = await inProcessRelay(t, { probeIntervalMs: 0, heartbeatMs: 50 });
  const { control } = await registerRaw(t, relay.controlPort, { hello: 'HELLO 1 feat=probe' });
  // Heartbeats go out meanwhile: several intervals passed without a PROBE.
  await eventually(() => control.text().split('PING').length > 4, 5000, 'three heartbeats');
  assert.deepEqual(
    control.lines.filter((line) => line.startsWith('PROBE')),
    [],
  );
  assert.equal(onlyService(relay).probe.state, 'not-probed');
});

test('probe: by hand, a probe token gets PROBED once, never a client, and a client token never gets PROBED', async (t) => {
  const relay = await inProcessRelay(t, { probeIntervalMs: 50, dialbackTimeoutMs: 5000 });
  const { control, registration } = await registerRaw(t, relay.controlPort, { hello: 'HELLO 1 feat=probe' });
  assert.match(control.lines[0] ?? '', / feat=[a-z,-]*probe/);
  const probe = /^PROBE ([0-9a-f]{32})$/.exec(await control.nextLine());
  assert.ok(probe, 'a PROBE line');
  const token = probe[1]!;
  const answered = await dialData(t, registration.dataPort, `DATA ${token}`);
  assert.equal(answered.reply, 'PROBED');
  assert.equal(await answered.peer.endsWithin(3000), 'end');
  await eventually(() => onlyService(relay).probe.state === 'ok', 5000, 'the probe to count as ok');
  const replayed = await dialData(t, registration.dataPort, `DATA ${token}`);
  assert.match(replayed.reply, /^ERR bad-token/);

  // A public client's token, presented on a data connection, gets the client, not PROBED.
  const client = await dial(t, registration.publicPort);
  let connect: RegExpExecArray | null = null;
  while (connect === null) connect = /^CONNECT ([0-9a-f]{32}) /.exec(await control.nextLine());
  const data = await dialData(t, registration.dataPort, `DATA ${connect[1]}`);
  assert.match(data.reply, /^CLIENT /);
  client.destroy();
});
