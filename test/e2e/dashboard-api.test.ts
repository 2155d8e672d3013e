import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { computeProof } from '../../src/protocol/auth.js';
import type { RelayView } from '../../src/monitor/api.js';
import type { ServiceView, TunnelRecord } from '../../src/monitor/overview.js';
import { getJson, relayWithDashboard } from '../helpers/dashboard.js';
import { dial, echoThrough, eventually, freePort, readAtLeast, readToEnd } from '../helpers/net.js';
import { ROOT, startService } from '../helpers/processes.js';
import { Peer, nextConnect, registerRaw } from '../helpers/protocol.js';

/** `./relay ARGS` to completion: a short-lived command, unlike the relay itself. */
function relayCommand(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(path.join(ROOT, 'relay'), args, { env: { ...process.env, ...env }, timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

const serviceAt = (services: ServiceView[], port: number): ServiceView | undefined => services.find((s) => s.publicPort === port);

test('dashboard API: services with open tunnels, waiting clients, bytes each way and probe results; closed tunnels and refusals; never a key or secret', async (t) => {
  const secret = 'dashboard-secret-never-shown';
  const relay = await relayWithDashboard(t, ['--secret', secret, '--probe', '0.2']);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port), '--secret', secret]);
  // A service that never dials back: its public client waits.
  const silent = await registerRaw(t, relay.port, { proof: (nonce) => computeProof(secret, nonce) });
  const waiting = await dial(t, silent.registration.publicPort);
  await nextConnect(silent.control);

  const client = await dial(t, echo.publicPort);
  client.write(Buffer.alloc(3000, 7));
  await readAtLeast(client, 3000);
  await eventually(
    async () => {
      const services = await getJson<ServiceView[]>(relay.base, 'api/services');
      const e = serviceAt(services, echo.publicPort);
      return e?.tunnelsOpen === 1 && e.bytesFromClients === 3000 && e.bytesToClients === 3000 && serviceAt(services, silent.registration.publicPort)?.waiting === 1;
    },
    5000,
    'the echo service shows 1 open tunnel with 3000 bytes each way, the silent one 1 waiting client',
  );
  const service = serviceAt(await getJson<ServiceView[]>(relay.base, 'api/services'), echo.publicPort)!;
  assert.equal(service.publicAddress, `127.0.0.1:${echo.publicPort}`);
  assert.equal(service.held, false);
  assert.equal(service.tenant, null);
  assert.ok(Math.abs(service.since - Date.now()) < 60_000);

  // The library answers probes; a service that did not announce them is not probed, never failed.
  await eventually(async () => serviceAt(await getJson<ServiceView[]>(relay.base, 'api/services'), echo.publicPort)?.probe.state === 'ok', 5000, 'the echo service probed ok');
  const services = await getJson<ServiceView[]>(relay.base, 'api/services');
  const probed = serviceAt(services, echo.publicPort)!.probe;
  assert.ok(probed.latencyMs !== null && probed.latencyMs >= 0 && probed.latencyMs < 5000, `latency ${probed.latencyMs}`);
  assert.ok(probed.lastAt !== null && Math.abs(probed.lastAt - Date.now()) < 60_000);
  assert.deepEqual([probed.failuresInARow, probed.reason], [0, null]);
  assert.deepEqual(serviceAt(services, silent.registration.publicPort)!.probe, { state: 'not-probed', lastAt: null, latencyMs: null, failuresInARow: 0, reason: null });

  const clientPort = client.localPort;
  client.end();
  await readToEnd(client);
  await eventually(async () => (await getJson<TunnelRecord[]>(relay.base, 'api/tunnels')).length === 1, 5000, 'the closed tunnel is listed');
  const [closed] = await getJson<TunnelRecord[]>(relay.base, 'api/tunnels');
  assert.deepEqual(
    { client: closed!.client, publicPort: closed!.publicPort, in: closed!.bytesFromClient, out: closed!.bytesToClient, closedBy: closed!.closedBy, outcome: closed!.outcome },
    { client: `127.0.0.1:${clientPort}`, publicPort: echo.publicPort, in: 3000, out: 3000, closedBy: 'client', outcome: 'end' },
  );

  const stranger = await Peer.open(t, relay.port);
  stranger.send('GARBAGE');
  assert.match(await stranger.nextLine(), /^ERR bad-line/);
  await eventually(async () => (await getJson(relay.base)).recentRefusals.length > 0, 5000, 'the refusal is listed');
  const overview = await getJson(relay.base);
  assert.equal(overview.recentRefusals[0]!.reason, 'bad-line');
  assert.equal(overview.recentRefusals[0]!.peer, '127.0.0.1');
  assert.match(overview.recentRefusals[0]!.message, /unknown message "GARBAGE"/);
  const relayView = await getJson<RelayView>(relay.base, 'api/relay');
  assert.equal(relayView.services, 2);
  assert.equal(relayView.refusals['bad-line'], 1);
  assert.equal(relayView.dialback.count, 1);
  assert.ok(relayView.memory.rssBytes > 0 && (relayView.openFds ?? 0) > 0);

  const everything = JSON.stringify(overview) + JSON.stringify(relayView);
  assert.ok(!everything.includes(silent.registration.resume), 'a resume key is never shown');
  assert.ok(!everything.includes(secret), 'the secret is never shown');
  assert.doesNotMatch(everything, /[0-9a-f]{32}/, 'nothing that looks like a key or token');
  waiting.destroy();
});

test('dashboard auth: --metrics-auth guards every path with basic auth; the password is never logged', async (t) => {
  const password = 'pa55-word-never-logged';
  const relay = await relayWithDashboard(t, ['--metrics-auth', `ops:${password}`]);
  for (const route of ['', 'api/overview', 'metrics', 'healthz', 'dashboard.js', 'nothing-here']) {
    const anonymous = await fetch(new URL(route, relay.base));
    assert.equal(anonymous.status, 401, `/${route} without credentials`);
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic realm="relay"/);
    const wrong = await fetch(new URL(route, relay.base), { headers: { authorization: `Basic ${Buffer.from('ops:guess').toString('base64')}` } });
    assert.equal(wrong.status, 401, `/${route} with a wrong password`);
  }
  const good = { authorization: `Basic ${Buffer.from(`ops:${password}`).toString('base64')}` };
  for (const route of ['', 'api/overview', 'metrics', 'healthz', 'dashboard.js']) {
    assert.equal((await fetch(new URL(route, relay.base), { headers: good })).status, 200, `/${route} with the right password`);
  }
  const page = await fetch(relay.base, { headers: good });
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'.*connect-src 'self'/);

  const fromEnv = await relayWithDashboard(t, [], { RELAY_METRICS_AUTH: `env:${password}` });
  assert.equal((await fetch(new URL('api/overview', fromEnv.base))).status, 401);
  assert.equal((await getJson(fromEnv.base, 'api/overview', `env:${password}`)).services.length, 0);
  assert.ok(![...relay.stderr, ...fromEnv.stderr].some((line) => line.includes(password)), 'the password is not in the log');
});

test('relay status: prints the relay, its services with their probes and recent tunnels as tables; one line and exit 1 when it cannot ask', async (t) => {
  const relay = await relayWithDashboard(t, ['--metrics-auth', 'ops:secret-pass', '--probe', '0.2']);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  const featless = await registerRaw(t, relay.port);
  const client = await dial(t, echo.publicPort);
  await echoThrough(client, Buffer.from('hello'));
  const metrics = new URL(relay.base).host;
  await eventually(async () => (await getJson(relay.base, 'api/overview', 'ops:secret-pass')).recentTunnels.length === 1, 5000, 'the tunnel is closed');
  await eventually(async () => serviceAt((await getJson(relay.base, 'api/overview', 'ops:secret-pass')).services, echo.publicPort)?.probe.state === 'ok', 5000, 'the echo service probed ok');

  const status = await relayCommand(['status', '--metrics', metrics, '--metrics-auth', 'ops:secret-pass']);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^relay +up .*2 services, 0 tunnels open \(1 since start\)/m);
  assert.match(status.stdout, /^PUBLIC ADDRESS +UP +TUNNELS +WAITING +IN +OUT .* STATE +PROBE$/m);
  assert.match(status.stdout, new RegExp(`^127\\.0\\.0\\.1:${echo.publicPort} +\\S+ +0 +0 +5 B +5 B .* live +ok \\d+(\\.\\d)?ms$`, 'm'));
  assert.match(status.stdout, new RegExp(`^127\\.0\\.0\\.1:${featless.registration.publicPort} +\\S+ +0 +0 +0 B +0 B .* live +not probed$`, 'm'));
  assert.match(status.stdout, new RegExp(`^\\d\\d:\\d\\d:\\d\\d +${echo.publicPort} +127\\.0\\.0\\.1:\\d+ .* client +end$`, 'm'));

  // The relay's own RELAY_* settings in the same environment are not status's business.
  const fromEnv = await relayCommand(['status'], { RELAY_METRICS: metrics, RELAY_METRICS_AUTH: 'ops:secret-pass', RELAY_SECRET: 'x', RELAY_PUBLIC_HOST: 'y' });
  assert.equal(fromEnv.code, 0, fromEnv.stderr);

  const noAuth = await relayCommand(['status', '--metrics', metrics]);
  assert.equal(noAuth.code, 1);
  assert.match(noAuth.stderr, /^relay status: .* needs credentials: give --metrics-auth USER:PASS/);
  assert.equal(noAuth.stderr.trim().split('\n').length, 1);

  const nobody = await relayCommand(['status', '--metrics', `127.0.0.1:${await freePort()}`]);
  assert.equal(nobody.code, 1);
  assert.match(nobody.stderr, /^relay status: cannot reach http:\/\/127\.0\.0\.1:\d+\/api\/overview \(ECONNREFUSED\); is the relay running with --metrics\?\n$/);
  assert.equal(nobody.stdout, '');

  const badFlag = await relayCommand(['status', '--metrics', 'not a place']);
  assert.equal(badFlag.code, 2);
  assert.match(badFlag.stderr, /^relay status: --metrics must be .*\n$/);
});

test('relay --metrics-auth: a malformed value or one without --metrics is a usage error that does not echo the password', async () => {
  const malformed = await relayCommand(['0', '--ports', '40000-40010', '--metrics', '127.0.0.1:0', '--metrics-auth', 'no-colon-secret']);
  assert.equal(malformed.code, 2);
  assert.match(malformed.stderr, /^relay: --metrics-auth must be USER:PASS/);
  assert.doesNotMatch(malformed.stderr, /no-colon-secret/);
  const alone = await relayCommand(['0', '--ports', '40000-40010', '--metrics-auth', 'a:b']);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /^relay: --metrics-auth needs --metrics/);
});
