import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import type { OverviewSnapshot } from '../../src/monitor/api.js';
import { CHECK_INTERVAL_MS, HEADERS_TIMEOUT_MS, MAX_CONNECTIONS_PER_ADDRESS } from '../../src/monitor/connection-limits.js';
import type { FleetView } from '../../src/monitor/fleet-view.js';
import { boundPort, exposureWarning, serveMonitor } from '../../src/monitor/http.js';
import { Overview } from '../../src/monitor/overview.js';
import { ServedHosts } from '../../src/monitor/served-hosts.js';
import { RelayStats } from '../../src/monitor/stats.js';
import { getWithHost } from '../helpers/dashboard.js';
import { deadline, dial, eventually } from '../helpers/net.js';
import { capturedLog } from '../helpers/log.js';

test('metrics listener: an error after it is up (a failed accept) is reported, not thrown, and /metrics keeps answering', async (t) => {
  const reported: Error[] = [];
  const stats = new RelayStats();
  const server = await serveMonitor({ stats, overview: new Overview(stats.bytes, () => []) }, '127.0.0.1', 0, { onError: (err) => reported.push(err) });
  t.after(() => server.close());
  // What libuv reports when accept() runs out of descriptors; without a listener it would be uncaught.
  const emfile = Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' });
  server.emit('error', emfile);
  assert.deepEqual(reported, [emfile]);
  const response = await fetch(`http://127.0.0.1:${boundPort(server)}/healthz`);
  assert.equal(await response.text(), 'ok\n');
});

/** A listener on 127.0.0.1 with fresh counters, closed after the test. */
async function monitor(t: TestContext, options: Parameters<typeof serveMonitor>[3] = {}, fleet?: () => FleetView) {
  const stats = new RelayStats();
  const server = await serveMonitor({ stats, overview: new Overview(stats.bytes, () => []), ...(fleet === undefined ? {} : { fleet }) }, '127.0.0.1', 0, options);
  t.after(() => server.close());
  return { server, port: boundPort(server) };
}

test('metrics listener: 400 half-sent requests from one address are all closed within the header timeout, and another client is answered meanwhile', async (t) => {
  const { server, port } = await monitor(t);
  const started = performance.now();
  const closedAfter: number[] = [];
  const sockets = Array.from({ length: 400 }, () => {
    const socket = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' });
    socket.on('error', () => {});
    socket.on('connect', () => socket.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n'));
    socket.on('close', () => closedAfter.push(performance.now() - started));
    socket.resume(); // to see the relay's end of it
    return socket;
  });
  t.after(() => sockets.forEach((socket) => socket.destroy()));
  // The share of one address is kept at once; the rest are closed unread.
  await eventually(() => closedAfter.length >= 400 - MAX_CONNECTIONS_PER_ADDRESS, 5000, 'connections over the per-address cap closed at once');
  assert.ok((await new Promise<number>((resolve) => server.getConnections((_, n) => resolve(n)))) <= MAX_CONNECTIONS_PER_ADDRESS);
  const response = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: deadline(2000) });
  assert.equal(await response.text(), 'ok\n');
  assert.equal(closedAfter.length < 400, true, 'the half-sent requests within the cap are still open when the other client is answered');
  await eventually(() => closedAfter.length === 400, HEADERS_TIMEOUT_MS + CHECK_INTERVAL_MS + 3000, 'every half-sent request closed');
  assert.ok(Math.max(...closedAfter) < HEADERS_TIMEOUT_MS + CHECK_INTERVAL_MS + 1000, `closed after ${Math.round(Math.max(...closedAfter))} ms`);
});

test('metrics listener: a connection that sends nothing is closed within the header timeout', async (t) => {
  const { port } = await monitor(t);
  const socket = await dial(t, port);
  socket.resume();
  const started = performance.now();
  await once(socket, 'end', { signal: deadline(HEADERS_TIMEOUT_MS + CHECK_INTERVAL_MS + 2000) });
  assert.ok(performance.now() - started < HEADERS_TIMEOUT_MS + CHECK_INTERVAL_MS + 1000);
});

test('metrics listener: only its own names and addresses are answered (DNS rebinding); others get 421 with one line, and one log line', async (t) => {
  const { logger, records } = capturedLog();
  const { port } = await monitor(t, { log: logger, hosts: ['metrics.internal', '192.0.2.7'] });
  for (const host of [
    `127.0.0.1:${port}`,
    '127.0.0.1',
    `localhost:${port}`,
    'LOCALHOST.',
    `dash.localhost:${port}`,
    `metrics.internal:${port}`,
    'Metrics.Internal:8080',
    '192.0.2.7',
    hostname(),
    `127.0.0.2:${port}`,
    `[::1]:${port}`,
  ]) {
    assert.equal((await getWithHost(port, host)).status, 200, `Host: ${host}`);
  }
  for (const host of [`attacker.example:${port}`, 'attacker.example', '10.0.0.1', `localhost:${port}:1`, 'metrics.internal.attacker.example']) {
    const { status, body } = await getWithHost(port, host, '/api/overview');
    assert.equal(status, 421, `Host: ${host}`);
    assert.match(body, /^this listener does not answer to that host name; the relay operator can add it with --metrics-host\n$/);
  }
  const refusedLines = records.filter((r) => String(r['msg']).startsWith('metrics: refused a request for a host name'));
  assert.equal(refusedLines.length, 1, 'logged once, not once per request');
  assert.equal(refusedLines[0]!['host'], `attacker.example:${port}`);
});

test('metrics listener: bound by the name localhost, it answers to the address it bound and to every loopback address', async (t) => {
  const stats = new RelayStats();
  const server = await serveMonitor({ stats, overview: new Overview(stats.bytes, () => []) }, 'localhost', 0);
  t.after(() => server.close());
  const port = boundPort(server);
  for (const host of [`127.0.0.1:${port}`, '127.0.0.1', '127.9.0.1', '[::1]', `localhost:${port}`]) {
    assert.equal((await getWithHost(port, host)).status, 200, `Host: ${host}`);
  }
  for (const host of ['attacker.example', '10.0.0.1', '[fe80::1]']) assert.equal((await getWithHost(port, host)).status, 421, `Host: ${host}`);
});

test('metrics listener: bound by a name that is not localhost, it answers to the address the name resolved to', () => {
  const served = new ServedHosts('metrics.lan');
  assert.equal(served.allows('192.0.2.5:9100'), false);
  served.addBound('192.0.2.5');
  assert.equal(served.allows('192.0.2.5:9100'), true);
  assert.equal(served.allows('127.0.0.1'), false, 'not a loopback bind');
  served.addBound('127.0.0.1');
  assert.equal(served.allows('[::1]:9100'), true, 'a name that resolved to loopback makes a loopback bind');
});

test('metrics listener: with --metrics-auth, a foreign host name is refused before the password is looked at', async (t) => {
  const { port } = await monitor(t, { auth: { user: 'ops', password: 'pw' } });
  const authorization = `Basic ${Buffer.from('ops:pw').toString('base64')}`;
  assert.equal((await getWithHost(port, 'attacker.example', '/api/overview', { Authorization: authorization })).status, 421);
  assert.equal((await getWithHost(port, 'attacker.example', '/api/overview')).status, 421);
  assert.equal((await getWithHost(port, `127.0.0.1:${port}`, '/api/overview')).status, 401);
  assert.equal((await getWithHost(port, `127.0.0.1:${port}`, '/api/overview', { Authorization: authorization })).status, 200);
});

test('metrics listener: a bind beyond this machine without --metrics-auth gets one warning; loopback or a password gets none', () => {
  for (const host of ['0.0.0.0', '::', '192.0.2.1', '2001:db8::1', 'relay.example.com']) assert.match(exposureWarning(host, false) ?? '', /without --metrics-auth/, host);
  for (const host of ['127.0.0.1', '127.0.0.2', '::1', 'localhost', '::ffff:127.0.0.1']) assert.equal(exposureWarning(host, false), undefined, host);
  assert.equal(exposureWarning('0.0.0.0', true), undefined);
});

test('metrics listener: /api/overview has fleet null on a single relay, and the fleet view when a fleet node gives one', async (t) => {
  const single = await monitor(t);
  assert.equal(((await (await fetch(`http://127.0.0.1:${single.port}/api/overview`)).json()) as OverviewSnapshot).fleet, null);
  const view: FleetView = { node: 'n1', address: '127.0.0.1:7000', peers: ['127.0.0.2:7000'], etcd: { reachable: false, lastError: 'Error: connect ECONNREFUSED', lastErrorAt: 1 } };
  const node = await monitor(t, {}, () => view);
  assert.deepEqual(((await (await fetch(`http://127.0.0.1:${node.port}/api/overview`)).json()) as OverviewSnapshot).fleet, view);
});
