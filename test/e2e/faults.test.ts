import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import path from 'node:path';
import { computeProof } from '../../src/protocol/auth.js';
import { deferred, deadline, dial, refusedHow, echoThrough, freePort, portsFlag, randomData, readAtLeast, readToEnd, sha256, within, howItEnds, eventually } from '../helpers/net.js';
import { getJson, relayWithDashboard } from '../helpers/dashboard.js';
import { assertEchoes } from '../helpers/echo.js';
import { NO_ENV_SECRET, ROOT, start, startRelay, startService, type Child } from '../helpers/processes.js';
import { Peer, dialData, nextConnect, registerRaw } from '../helpers/protocol.js';
import { countLines, isRunning, logLine, refusedWithin } from '../helpers/observe.js';

function startEcho(t: TestContext, relayPort: number, args: string[] = [], env: Record<string, string> = NO_ENV_SECRET): Child {
  return start(t, path.join(ROOT, 'echoserver'), ['127.0.0.1', String(relayPort), ...args], env);
}

/** How many times each warning or error message appears in a pino log (for failure messages). */
function warningSummary(lines: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of lines) {
    const match = /"level":(40|50|60).*"msg":"([^"]{0,80})/.exec(line);
    if (match !== null) counts[match[2]!] = (counts[match[2]!] ?? 0) + 1;
  }
  return counts;
}

test('kill -9 of ./echoserver: its public port stops accepting at once, its clients are closed, and the port is given out again', async (t) => {
  const relay = await relayWithDashboard(t, ['--heartbeat', '0.5', '--resume-grace', '0.5']);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  const client = await dial(t, echo.publicPort);
  await assertEchoes(client, 'hello\n');

  const from = relay.stderr.length;
  echo.signal('SIGKILL');
  const freedMs = await refusedWithin(echo.publicPort, 2500);
  t.diagnostic(`public port refused ${freedMs} ms after kill -9`);
  await relay.waitFor('stderr', /"msg":"service left"/, 2000, from);
  await howItEnds(client, 2000);

  // The port stays reserved for the dead service's resume key for --resume-grace; the
  // relay logs nothing when that ends, but its dashboard lists the service (as away)
  // until then. After it a service that asks for nothing gets the port again.
  const listed = async (): Promise<boolean> => (await getJson(relay.base)).services.some((s) => s.publicPort === echo.publicPort);
  await eventually(async () => !(await listed()), 5000, 'the reservation to end after --resume-grace');
  const next = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  assert.equal(next.publicPort, echo.publicPort);
  await assertEchoes(await dial(t, next.publicPort), 'same port, new service\n');
});

test('kill -9 and restart of ./relay on the same port: ./echoserver registers again with the same address and echoes', async (t) => {
  const port = await freePort();
  // The worker a killed master leaves behind drains its tunnels for --drain-timeout
  // (test/e2e/master-gone.test.ts); a short one ends the old tunnel soon.
  const relayArgs = [String(port), ...portsFlag(), '--heartbeat', '0.5', '--drain-timeout', '0.5'];
  const first = start(t, path.join(ROOT, 'relay'), relayArgs, NO_ENV_SECRET);
  await first.waitFor('stderr', /"msg":"relay listening"/);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(port)], NO_ENV_SECRET);
  const before = await dial(t, echo.publicPort);
  await assertEchoes(before, 'before the crash\n');

  first.signal('SIGKILL');
  await within(first.exited, 3000, 'the relay to die');
  assert.equal(await howItEnds(before, 5000), 'reset', 'a tunnel the crash cut ends in a reset');

  const second = start(t, path.join(ROOT, 'relay'), relayArgs, NO_ENV_SECRET);
  await second.waitFor('stderr', /"msg":"relay listening"/);
  const again = await echo.waitFor('stdout', /^established relay address: /, 15_000, 1);
  assert.equal(again.input, echo.stdout[0], 'the same public address after the restart');
  assert.equal(echo.stdout.length, 2);
  const after = await dial(t, echo.publicPort);
  const data = randomData(256 * 1024);
  assert.equal(sha256(await echoThrough(after, data)), sha256(data));
});

test('SIGSTOP of ./echoserver: the relay declares it dead within 4 heartbeats and holds its door; after SIGCONT it registers again and serves the held client', async (t) => {
  const HEARTBEAT_MS = 500;
  const relay = await startRelay(t, [...portsFlag(), '--heartbeat', '0.5', '--resume-grace', '10']);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  await assertEchoes(await dial(t, echo.publicPort), 'alive\n');

  const from = relay.stderr.length;
  const stoppedAt = Date.now();
  echo.signal('SIGSTOP');
  t.after(() => echo.signal('SIGCONT'));
  const [line] = await relay.waitFor('stderr', logLine('"msg":"service left"', '"reason":"no heartbeat'), 6 * HEARTBEAT_MS + 2000, from);
  const detectedMs = (JSON.parse(line) as { time: number }).time - stoppedAt;
  t.diagnostic(`stopped service declared dead after ${detectedMs} ms (heartbeat ${HEARTBEAT_MS} ms)`);
  assert.ok(detectedMs <= 4 * HEARTBEAT_MS + 500, `declared dead after ${detectedMs} ms`);
  // The port is still the service's (within its grace): a client is held, not refused.
  const held = await dial(t, echo.publicPort);
  held.write('sent while the service was away\n');

  echo.signal('SIGCONT');
  const again = await echo.waitFor('stdout', /^established relay address: /, 10_000, 1);
  assert.equal(again.input, echo.stdout[0], 'its resume key gets it the same address back');
  assert.equal((await readAtLeast(held, 32, 5000)).toString(), 'sent while the service was away\n');
  await assertEchoes(await dial(t, echo.publicPort), 'back again\n');
});

test('authentication: the right secret registers; a wrong or missing secret exits non-zero with "authentication failed" and does not retry', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--secret', 's3cret'], NO_ENV_SECRET);
  const good = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port), '--secret', 's3cret'], NO_ENV_SECRET);
  await assertEchoes(await dial(t, good.publicPort), 'authenticated\n');

  for (const args of [['--secret', 'wrong'], []]) {
    const from = relay.stderr.length;
    const bad = startEcho(t, relay.port, args);
    const { code } = await within(bad.exited, 5000, `echoserver ${args.join(' ') || 'without a secret'} to exit`);
    assert.notEqual(code, 0);
    assert.match(bad.stderr.join('\n'), /authentication failed/);
    assert.deepEqual(bad.stdout, []);
    // One attempt only: with a wrong secret the relay refused exactly one PROOF.
    const authRefusals = countLines(relay.stderr.slice(from), /"reason":"auth"/);
    assert.equal(authRefusals, args.length === 0 ? 0 : 1, 'the refused service tried again');
  }
});

test('authentication: RELAY_SECRET in the environment works for the relay and for ./echoserver', async (t) => {
  const relay = await startRelay(t, portsFlag(), { RELAY_SECRET: 's3cret' });
  const good = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], { RELAY_SECRET: 's3cret' });
  await assertEchoes(await dial(t, good.publicPort), 'secret from the environment\n');
  for (const env of [{ RELAY_SECRET: 'wrong' }, NO_ENV_SECRET]) {
    const bad = startEcho(t, relay.port, [], env);
    const { code } = await within(bad.exited, 5000, `echoserver with RELAY_SECRET=${env.RELAY_SECRET} to exit`);
    assert.notEqual(code, 0);
    assert.match(bad.stderr.join('\n'), /authentication failed/);
  }
});

test('authentication: a recorded PROOF replayed on a new connection (a new nonce) gets "ERR auth"', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--secret', 's3cret'], NO_ENV_SECRET);
  let recorded = '';
  const first = await registerRaw(t, relay.port, { proof: (nonce) => (recorded = computeProof('s3cret', nonce)) });
  assert.ok(first.registration.publicPort > 0, 'the genuine PROOF registers');

  const replay = await Peer.open(t, relay.port);
  replay.send('HELLO 1 host=127.0.0.1');
  const auth = /^AUTH ([0-9a-f]{64})$/.exec(await replay.nextLine());
  assert.ok(auth !== null);
  assert.notEqual(auth[1], first.nonce, 'every registration gets a fresh nonce');
  replay.send(`PROOF ${recorded}`);
  assert.match(await replay.nextLine(), /^ERR auth \S.*$/);
  await replay.endsWithin(3000);
  assert.ok(!replay.lines.some((line) => line.startsWith('OK ')));
});

test('limits: --max-services 2 refuses a third with "ERR limit"; the refused ./echoserver keeps trying and registers once a place is free', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--max-services', '2'], NO_ENV_SECRET);
  const a = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  const b = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);

  const raw = await Peer.open(t, relay.port);
  raw.send('HELLO 1 host=127.0.0.1');
  assert.match(await raw.nextLine(), /^ERR limit \S.*$/);
  await raw.endsWithin(3000);

  const from = relay.stderr.length;
  const c = startEcho(t, relay.port);
  const refusal = logLine('"reason":"limit"', '"msg":"connection refused');
  await eventually(() => countLines(relay.stderr.slice(from), refusal) >= 2, 5000, 'the relay to refuse the third echoserver twice');
  assert.ok(isRunning(c.pid), 'a service refused for a limit keeps trying');
  assert.deepEqual(c.stdout, []);
  await assertEchoes(await dial(t, a.publicPort), 'first\n');
  await assertEchoes(await dial(t, b.publicPort), 'second\n');

  a.signal('SIGKILL');
  const registered = await c.waitFor('stdout', /^established relay address: .+:(\d+)$/, 15_000);
  await assertEchoes(await dial(t, Number(registered[1])), 'third, at last\n');
});

test('limits: --max-clients 3 closes the fourth public client while the first three keep echoing; a freed place is reused', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--max-clients', '3'], NO_ENV_SECRET);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  const clients: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const client = await dial(t, echo.publicPort);
    await assertEchoes(client, `client ${i}\n`);
    clients.push(client);
  }
  assert.equal(await refusedHow(t, echo.publicPort), 'reset', 'the fourth client is reset unanswered');
  await relay.waitFor('stderr', /public client refused/, 2000);
  for (const [i, client] of clients.entries()) await assertEchoes(client, `client ${i} again\n`);

  const closedBefore = countLines(relay.stderr, /"msg":"tunnel closed"/);
  clients[0]!.end();
  clients[0]!.resume();
  await readToEnd(clients[0]!, 3000);
  await eventually(() => countLines(relay.stderr, /"msg":"tunnel closed"/) > closedBefore, 3000, 'the first tunnel to close');
  await assertEchoes(await dial(t, echo.publicPort), 'a new client in the freed place\n');
});

test('limits: --max-pending 2 with a service that never dials back: the third client is closed and the service never hears of it', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--max-pending', '2', '--dialback-timeout', '20'], NO_ENV_SECRET);
  const service = await registerRaw(t, relay.port);
  const { publicPort, dataPort } = service.registration;
  const first = await dial(t, publicPort);
  const firstToken = (await nextConnect(service.control)).token;
  const second = await dial(t, publicPort);
  await nextConnect(service.control);

  assert.equal(await refusedHow(t, publicPort), 'reset', 'the third client is reset unanswered');
  await relay.waitFor('stderr', /public client refused: over 2 pending/, 2000);
  service.control.send('PING');
  assert.equal(await service.control.nextLine(), 'PONG', 'no CONNECT for the refused client');
  assert.ok(!first.destroyed && !second.destroyed, 'the two pending clients still wait');

  // Once a pending client is answered there is room for another.
  const data = await dialData(t, dataPort, `DATA ${firstToken}`);
  assert.match(data.reply, /^CLIENT /);
  first.write('ping');
  assert.equal((await data.peer.readBytes(4)).toString(), 'ping');
  await dial(t, publicPort);
  await nextConnect(service.control);
});

test('2000 concurrent clients through one ./echoserver each get exactly their own bytes back', async (t) => {
  // All 2000 connect at once: the pending dial-back cap (1024 by default) is raised so
  // that this tests concurrency, not that limit (which has its own test above).
  const relay = await startRelay(t, [...portsFlag(), '--max-pending', '4096'], NO_ENV_SECRET);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  const results = await Promise.allSettled(
    Array.from({ length: 2000 }, async (_, i) => {
      const data = Buffer.concat([Buffer.from(`client ${i}:`), randomData(1024 + Math.floor(Math.random() * 16 * 1024))]);
      const socket = await dial(t, echo.publicPort);
      const back = await echoThrough(socket, data, 4096, 60_000);
      assert.equal(sha256(back), sha256(data), `client ${i} got other bytes`);
    }),
  );
  const failures = results.flatMap((result) => (result.status === 'rejected' ? [String(result.reason)] : []));
  assert.equal(
    failures.length,
    0,
    `${failures.length} of 2000 clients failed; first: ${failures.slice(0, 3).join(' | ')}\n` +
      `relay warnings: ${JSON.stringify(warningSummary(relay.stderr))}\nechoserver warnings: ${JSON.stringify(warningSummary(echo.stderr))}`,
  );
});

test('graceful shutdown: SIGTERM to the relay mid-transfer lets the tunnel finish, refuses new connections, and exits 0 when it closes', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--drain-timeout', '30'], NO_ENV_SECRET);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  const client = await dial(t, echo.publicPort);
  const data = randomData(8 * 1024 * 1024);
  const chunks: Buffer[] = [];
  let got = 0;
  const quarter = deferred<void>();
  client.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    got += chunk.length;
    if (got >= data.length / 4) quarter.resolve();
  });
  const ended = once(client, 'end', { signal: deadline(30_000) });
  const write = async (from: number, to: number): Promise<void> => {
    for (let offset = from; offset < to; offset += 64 * 1024) {
      if (!client.write(data.subarray(offset, Math.min(to, offset + 64 * 1024)))) await once(client, 'drain', { signal: deadline(10_000) });
    }
  };
  await write(0, data.length / 2);
  await within(quarter.promise, 10_000, 'a quarter of the echo');

  relay.signal('SIGTERM');
  await relay.waitFor('stderr', /"msg":"shutting down"/, 3000);
  await refusedWithin(relay.port, 2000);
  await refusedWithin(echo.publicPort, 2000);
  await write(data.length / 2, data.length);
  assert.ok(isRunning(relay.pid), 'the relay exited with a tunnel still open');
  client.end();
  await ended;
  const closedAt = performance.now();
  assert.equal(got, data.length);
  assert.equal(sha256(Buffer.concat(chunks)), sha256(data), 'the tunnel carried every byte across the shutdown');
  const { code } = await within(relay.exited, 3000, 'the relay to exit once its last tunnel closed');
  t.diagnostic(`relay exited ${Math.round(performance.now() - closedAt)} ms after the last tunnel closed`);
  assert.equal(code, 0);
});

test('graceful shutdown: a tunnel still open at --drain-timeout is cut and the relay exits 0', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--drain-timeout', '1'], NO_ENV_SECRET);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  const client = await dial(t, echo.publicPort);
  await assertEchoes(client, 'idle after this\n');
  const started = performance.now();
  relay.signal('SIGTERM');
  const cut = howItEnds(client, 5000);
  const { code } = await within(relay.exited, 4000, 'the relay to exit at the drain timeout');
  const elapsed = performance.now() - started;
  assert.equal(code, 0);
  assert.ok(elapsed >= 900 && elapsed <= 3000, `exited ${Math.round(elapsed)} ms after SIGTERM, drain timeout 1000 ms`);
  await cut;
});

test('graceful shutdown: a second SIGTERM makes the relay exit at once, cutting its tunnels', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--drain-timeout', '30'], NO_ENV_SECRET);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  const client = await dial(t, echo.publicPort);
  await assertEchoes(client, 'keep me open\n');
  relay.signal('SIGTERM');
  await relay.waitFor('stderr', /"msg":"shutting down"/, 3000);
  const started = performance.now();
  relay.signal('SIGTERM');
  const { code, signal } = await within(relay.exited, 1500, 'the relay to exit after a second SIGTERM');
  t.diagnostic(`exited ${Math.round(performance.now() - started)} ms after the second SIGTERM, code ${code}`);
  assert.equal(signal, null, 'it exits by itself, not killed by the signal');
  await howItEnds(client, 2000);
});

test('graceful shutdown: SIGTERM to ./echoserver leaves the relay, lets the open client finish its echo, then exits 0', async (t) => {
  const relay = await startRelay(t, portsFlag(), NO_ENV_SECRET);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  const client = await dial(t, echo.publicPort);
  await assertEchoes(client, 'before SIGTERM\n');

  const from = relay.stderr.length;
  echo.signal('SIGTERM');
  await relay.waitFor('stderr', /"msg":"service left"/, 3000, from);
  await refusedWithin(echo.publicPort, 2000);
  await assertEchoes(client, 'after SIGTERM, still echoed\n');
  assert.ok(isRunning(echo.pid), 'the echoserver exited with a client still open');
  client.end('last words\n');
  client.resume();
  assert.equal((await readToEnd(client, 5000)).toString(), 'last words\n');
  const { code } = await within(echo.exited, 3000, 'the echoserver to exit once its client left');
  assert.equal(code, 0);
});
