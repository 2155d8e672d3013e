import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect as connectTls } from 'node:tls';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { promisify } from 'node:util';
import { assertEchoes } from '../helpers/echo.js';
import { deferred, dial, echoThrough, listenLocal, portsFlag, randomData, readAtLeast, sha256, within, howItEnds, eventually } from '../helpers/net.js';
import { startRelay, startService, type RelayProcess, type ServiceProcess } from '../helpers/processes.js';
import { Peer, dialData, nextConnect, randomHex, registerRaw } from '../helpers/protocol.js';
import { isRunning, openFiles, refusalsLogged, rssKiB } from '../helpers/observe.js';
import { requireTools } from '../helpers/tools.js';

const run = promisify(execFile);

/** Short timeouts, so that hostile connections are cut quickly and the tests stay short. */
const HANDSHAKE_MS = 1000;
const RELAY_FLAGS = ['--handshake-timeout', '1', '--dialback-timeout', '1'];
/** How long past a timeout the relay may take to act on it. */
const MARGIN_MS = 1000;

interface Victim {
  relay: RelayProcess;
  echo: ServiceProcess;
  /** A client of the echo tunnel, connected before the attack. */
  client: Socket;
}

/** A relay with an echo tunnel and a client already talking through it. */
async function victim(t: TestContext, flags = RELAY_FLAGS, serviceFlags: string[] = []): Promise<Victim> {
  const relay = await startRelay(t, [...portsFlag(), ...flags]);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port), ...serviceFlags]);
  const client = await dial(t, echo.publicPort);
  await assertEchoes(client, 'before the attack\n');
  return { relay, echo, client };
}

/** The relay still runs, the tunnel opened before the attack still echoes, and a new service still registers. */
async function assertUnharmed(t: TestContext, v: Victim, attack: string): Promise<void> {
  assert.ok(isRunning(v.relay.workerPid) && v.relay.process.exitCode === null, `the relay died after ${attack}`);
  await assertEchoes(v.client, `still echoing after ${attack}\n`);
  const fresh = await startService(t, 'echoserver', ['127.0.0.1', String(v.relay.port)]);
  const socket = await dial(t, fresh.publicPort);
  const data = randomData(64 * 1024);
  assert.equal(sha256(await echoThrough(socket, data, 8192, 10_000)), sha256(data), `a new service does not echo after ${attack}`);
}

/**
 * Waits until the relay has accounted for `count` refusals since `from` (a line each, or a
 * count in a rate-limit summary), then checks there are no more: each refusal is logged once.
 */
async function assertRefusalsLogged(relay: RelayProcess, from: number, count: number): Promise<void> {
  const refused = (): number => refusalsLogged(relay.stderr.slice(from));
  await eventually(() => refused() >= count, 5000, `${count} refusals in the relay log (got ${refused()})`);
  assert.equal(refused(), count, 'each refused connection is logged exactly once');
}

/** Connects, sends `input`, and returns the one line of reply; the relay must then close the connection. */
async function refusalFor(t: TestContext, port: number, input: string | Buffer): Promise<string> {
  const peer = await Peer.open(t, port);
  peer.socket.write(input);
  const line = await peer.nextLine(HANDSHAKE_MS + MARGIN_MS);
  await peer.endsWithin(3000);
  return line;
}

test('hostile: random bytes on the relay port get "ERR binary" and a close', async (t) => {
  const v = await victim(t);
  const from = v.relay.stderr.length;
  const replies = await Promise.all(
    Array.from({ length: 20 }, () => {
      const garbage = randomData(1 + Math.floor(Math.random() * 8192));
      garbage[0] = 0x80 | garbage[0]!; // outside printable ASCII, so the refusal is 'binary' whatever follows
      return refusalFor(t, v.relay.port, garbage);
    }),
  );
  for (const reply of replies) assert.match(reply, /^ERR binary \S.*$/);
  await assertRefusalsLogged(v.relay, from, 20);
  await assertUnharmed(t, v, 'random bytes');
});

test('hostile: lines that are not the protocol get the exact ERR code', async (t) => {
  const v = await victim(t);
  const cases: [string, RegExp][] = [
    ['\n', /^ERR bad-line /],
    ['hello there\n', /^ERR bad-line /],
    ['HELLO\n', /^ERR bad-line /],
    ['HELLO 1 host=bad!host\n', /^ERR bad-line /],
    ['HELLO 1 port=99999\n', /^ERR bad-line /],
    ['HELLO 2\n', /^ERR version /],
    ['PROOF ' + 'a'.repeat(64) + '\n', /^ERR bad-line /],
    ['PONG\n', /^ERR bad-line /],
    ['DATA 1234\n', /^ERR bad-line /],
    ['DATA ' + 'G'.repeat(32) + '\n', /^ERR bad-line /],
    ['HELLO 1\tport=1\n', /^ERR binary /],
    ['SSH-2.0-OpenSSH_9.6\r\n', /^ERR bad-line /],
    ['EHLO relay.example\r\n', /^ERR bad-line /],
  ];
  const from = v.relay.stderr.length;
  for (const [input, expected] of cases) {
    assert.match(await refusalFor(t, v.relay.port, input), expected, `reply to ${JSON.stringify(input)}`);
  }
  await assertRefusalsLogged(v.relay, from, cases.length);
  await assertUnharmed(t, v, 'protocol-shaped junk');
});

test('hostile: a 1 MiB line with no newline gets "ERR too-long" and a close, without waiting for the end of it', async (t) => {
  const v = await victim(t);
  const peer = await Peer.open(t, v.relay.port);
  peer.socket.write(Buffer.alloc(1024 * 1024, 'A'));
  assert.match(await peer.nextLine(3000), /^ERR too-long \S.*$/);
  assert.ok((await peer.endsWithin(5000)) !== undefined);
  await assertUnharmed(t, v, 'a 1 MiB line');
});

test('hostile: an HTTP request on the relay port gets an HTTP 400 reply and a close', async (t) => {
  const v = await victim(t);
  const peer = await Peer.open(t, v.relay.port);
  peer.socket.write('GET /index.html HTTP/1.1\r\nHost: relay.example\r\nUser-Agent: hostile-test\r\nAccept: */*\r\n\r\n');
  await peer.endsWithin(3000);
  const reply = peer.text();
  assert.match(reply, /^HTTP\/1\.1 400 Bad Request\r\n/);
  const [head, body] = reply.split('\r\n\r\n') as [string, string];
  const length = /\r\nContent-Length: (\d+)/i.exec(head);
  assert.ok(length !== null, 'the 400 reply has a Content-Length');
  assert.equal(Buffer.byteLength(body, 'latin1'), Number(length[1]), 'the body is exactly Content-Length bytes');

  await t.test('a real HTTP client (curl) sees a 400 too, not a hang or a protocol error', async (t) => {
    if (!requireTools(t, 'curl')) return;
    const { stdout } = await run('curl', ['-sS', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${v.relay.port}/`]);
    assert.equal(stdout, '400');
  });
  await assertUnharmed(t, v, 'an HTTP request');
});

/** The first bytes node:tls sends: a real ClientHello, captured by a plain TCP server. */
async function captureClientHello(t: TestContext): Promise<Buffer> {
  const got = deferred<Buffer>();
  const { port } = await listenLocal(t, (socket) =>
    socket.once('data', (chunk: Buffer) => {
      got.resolve(chunk);
      socket.destroy();
    }),
  );
  const client = connectTls({ port, host: '127.0.0.1', servername: 'relay.example', rejectUnauthorized: false });
  client.on('error', () => {});
  t.after(() => client.destroy());
  return within(got.promise, 5000, 'a TLS ClientHello');
}

test('hostile: a TLS ClientHello on the relay port is refused and closed; a TLS client fails at once instead of hanging', async (t) => {
  const v = await victim(t);
  const hello = await captureClientHello(t);
  assert.equal(hello[0], 0x16, 'a TLS handshake record');
  assert.equal(hello[1], 0x03);

  const peer = await Peer.open(t, v.relay.port);
  peer.socket.write(hello);
  await peer.endsWithin(HANDSHAKE_MS + MARGIN_MS);
  // A TLS client cannot read a text line, so no reply is needed; if one is sent it is the ERR line.
  const reply = peer.text();
  assert.ok(reply === '' || /^ERR binary [^\n]*\n$/.test(reply), `unexpected reply to a ClientHello: ${JSON.stringify(reply)}`);

  const tlsClient = connectTls({ port: v.relay.port, host: '127.0.0.1', servername: 'relay.example', rejectUnauthorized: false });
  t.after(() => tlsClient.destroy());
  const [err] = (await once(tlsClient, 'error', { signal: AbortSignal.timeout(HANDSHAKE_MS + MARGIN_MS) })) as [Error];
  assert.ok(err instanceof Error);
  await assertUnharmed(t, v, 'a TLS ClientHello');
});

test('hostile: a connection that sends nothing gets "ERR timeout" and is closed at the handshake timeout', async (t) => {
  const v = await victim(t);
  const started = performance.now();
  const peer = await Peer.open(t, v.relay.port);
  assert.match(await peer.nextLine(HANDSHAKE_MS + MARGIN_MS), /^ERR timeout \S.*$/);
  await peer.endsWithin(500);
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= HANDSHAKE_MS - 100, `closed after ${elapsed} ms, before the handshake timeout`);
  assert.ok(elapsed <= HANDSHAKE_MS + MARGIN_MS, `closed after ${elapsed} ms`);
  await assertUnharmed(t, v, 'a silent connection');
});

test('hostile: a valid-looking line drip-fed one byte every 200 ms is cut at the handshake timeout', async (t) => {
  const v = await victim(t);
  const line = Buffer.from('HELLO 1 host=127.0.0.1 port=20000\n');
  const started = performance.now();
  const peer = await Peer.open(t, v.relay.port);
  let sent = 0;
  const drip = setInterval(() => {
    if (sent < line.length && peer.socket.writable) peer.socket.write(line.subarray(sent, ++sent));
  }, 200);
  t.after(() => clearInterval(drip));
  assert.match(await peer.nextLine(HANDSHAKE_MS + MARGIN_MS), /^ERR timeout \S.*$/);
  await peer.endsWithin(500);
  clearInterval(drip);
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= HANDSHAKE_MS - 100 && elapsed <= HANDSHAKE_MS + MARGIN_MS, `cut after ${elapsed} ms`);
  assert.ok(sent < line.length, 'the line was still incomplete when it was cut');
  await assertUnharmed(t, v, 'a drip-fed line');
});

test('hostile: a connection that half-closes (FIN) before a complete line is closed by the relay, and leaves no socket open there', async (t) => {
  const v = await victim(t);
  const filesBefore = openFiles(v.relay.workerPid);
  // nc with an empty stdin, a port scanner, a client that gave up: FIN with no line, or half a line.
  const peers = await Promise.all(Array.from({ length: 100 }, () => Peer.open(t, v.relay.port)));
  peers.forEach((peer, i) => (i % 2 === 0 ? peer.socket.end() : peer.socket.end('HELLO 1 host=')));
  const ends = await Promise.allSettled(peers.map((peer) => peer.endsWithin(HANDSHAKE_MS + MARGIN_MS)));
  const open = ends.filter((end) => end.status === 'rejected').length;
  assert.equal(open, 0, `${open} of 100 half-closed connections were still open on the relay after ${HANDSHAKE_MS + MARGIN_MS} ms`);
  for (const peer of peers) peer.socket.destroy();
  await eventually(() => openFiles(v.relay.workerPid) <= filesBefore + 5, 5000, `relay open files back to ${filesBefore} (now ${openFiles(v.relay.workerPid)})`);
  await assertUnharmed(t, v, 'half-closed connections');
});

test('hostile: forged tokens (DATA or IDLE with 32 random hex digits) get "ERR bad-token"', async (t) => {
  const v = await victim(t);
  const from = v.relay.stderr.length;
  const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => dialData(t, v.relay.dataPort, `${i % 5 === 0 ? 'IDLE' : 'DATA'} ${randomHex(32)}`)));
  for (const { peer, reply } of replies) {
    assert.match(reply, /^ERR bad-token \S.*$/);
    await peer.endsWithin(3000);
    assert.equal(peer.rawReceived().length, 0, 'nothing after the ERR line');
  }
  await assertRefusalsLogged(v.relay, from, 50);
  await assertUnharmed(t, v, 'forged tokens');
});

test('hostile: a token works once; the same token replayed gets "ERR bad-token" and none of the client\'s bytes', async (t) => {
  const v = await victim(t);
  const { control, registration } = await registerRaw(t, v.relay.port);
  const client = await dial(t, registration.publicPort);
  const { token } = await nextConnect(control);

  const first = await dialData(t, registration.dataPort, `DATA ${token}`);
  assert.match(first.reply, /^CLIENT 127\.0\.0\.1 \d+\b/);
  client.write('to the owner');
  assert.equal((await first.peer.readBytes(12)).toString(), 'to the owner');
  first.peer.socket.write('from the owner');
  assert.equal((await readAtLeast(client, 14)).toString(), 'from the owner');

  const replay = await dialData(t, registration.dataPort, `DATA ${token}`);
  assert.match(replay.reply, /^ERR bad-token \S.*$/);
  client.write(' and more');
  assert.equal((await first.peer.readBytes(9)).toString(), ' and more');
  await replay.peer.endsWithin(3000);
  assert.equal(replay.peer.rawReceived().length, 0, 'the replayed token got client bytes');
  await assertUnharmed(t, v, 'a replayed token');
});

test('hostile: an expired token is refused, and its public client was reset at the dial-back timeout', async (t) => {
  const v = await victim(t);
  const { control, registration } = await registerRaw(t, v.relay.port);
  const client = await dial(t, registration.publicPort);
  const started = performance.now();
  const { token } = await nextConnect(control);
  // A service that is heard from after the CONNECT is alive and just not dialing back;
  // one that falls silent keeps its clients held until the heartbeat decides.
  control.send('PING');
  const ending = await howItEnds(client, 1000 + MARGIN_MS + 500);
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 900 && elapsed <= 1000 + MARGIN_MS + 500, `client ended after ${elapsed} ms, dial-back timeout is 1000 ms`);
  assert.equal(ending, 'reset', 'a reset, not a FIN: nothing was served');
  await v.relay.waitFor('stderr', /service did not dial back in time/, 2000);

  const late = await dialData(t, registration.dataPort, `DATA ${token}`);
  assert.match(late.reply, /^ERR bad-token \S.*$/);
  await late.peer.endsWithin(3000);
  await assertUnharmed(t, v, 'an expired token');
});

test("hostile: tokens are 128-bit, distinct, and sent only to the port's owner; another service never sees them", async (t) => {
  const v = await victim(t);
  const owner = await registerRaw(t, v.relay.port);
  const other = await registerRaw(t, v.relay.port);
  assert.notEqual(owner.registration.publicPort, other.registration.publicPort);

  const clients = await Promise.all(Array.from({ length: 20 }, () => dial(t, owner.registration.publicPort)));
  const tokens = new Set<string>();
  for (let i = 0; i < clients.length; i++) {
    const { token } = await nextConnect(owner.control);
    assert.match(token, /^[0-9a-f]{32}$/, '32 hex digits: 128 bits');
    tokens.add(token);
  }
  assert.equal(tokens.size, clients.length, 'every client gets its own token');
  // The relay answers PING with PONG in order: once PONG is here, anything sent to the
  // other service before it has arrived too.
  other.control.send('PING');
  assert.equal(await other.control.nextLine(), 'PONG');
  assert.deepEqual(other.control.lines.slice(1), ['PONG'], "the other service received lines about the owner's clients");

  // A guess from the other service is just a forged token.
  const guess = await dialData(t, other.registration.dataPort, `DATA ${randomHex(32)}`);
  assert.match(guess.reply, /^ERR bad-token /);
  await assertUnharmed(t, v, 'a second service fishing for tokens');
});

test('hostile: 1000 connections at once that send nothing or garbage are all closed; other tunnels keep echoing; memory and sockets come back', async (t) => {
  const v = await victim(t);
  const from = v.relay.stderr.length;
  const rssBefore = rssKiB(v.relay.workerPid);
  const filesBefore = openFiles(v.relay.workerPid);
  let rssPeak = rssBefore;
  const sampler = setInterval(() => {
    if (isRunning(v.relay.workerPid)) rssPeak = Math.max(rssPeak, rssKiB(v.relay.workerPid));
  }, 100);
  t.after(() => clearInterval(sampler));

  const opened = await Promise.allSettled(
    Array.from({ length: 1000 }, async (_, i) => {
      const peer = await Peer.open(t, v.relay.port);
      if (i % 3 === 1) peer.socket.write(randomData(1 + Math.floor(Math.random() * 4096)));
      if (i % 3 === 2) peer.socket.write('X'.repeat(1 + Math.floor(Math.random() * 1000)));
      return peer;
    }),
  );
  // While the flood is held open, the existing tunnel answers promptly.
  const echoStarted = performance.now();
  await assertEchoes(v.client, 'during the flood\n', 2000);
  const echoMs = performance.now() - echoStarted;

  const peers = opened.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const ends = await Promise.allSettled(peers.map((peer) => peer.endsWithin(10_000)));
  const stillOpen = ends.filter((end) => end.status === 'rejected').length;
  assert.equal(stillOpen, 0, `${stillOpen} flood connections were never closed by the relay`);
  for (const peer of peers) peer.socket.destroy();

  await eventually(() => openFiles(v.relay.workerPid) <= filesBefore + 5, 10_000, `relay open files back to ${filesBefore} (now ${openFiles(v.relay.workerPid)})`);
  clearInterval(sampler);
  const rssAfter = rssKiB(v.relay.workerPid);
  t.diagnostic(
    `relay VmRSS before ${Math.round(rssBefore / 1024)} MiB, peak ${Math.round(rssPeak / 1024)} MiB, after ${Math.round(rssAfter / 1024)} MiB; ` +
      `${peers.length} connected; echo during the flood ${Math.round(echoMs)} ms`,
  );
  assert.ok(rssAfter - rssBefore < 100 * 1024, `relay RSS grew by ${Math.round((rssAfter - rssBefore) / 1024)} MiB`);
  // Every flood connection is refused (or dropped) and accounted for once, in a line or a summary count.
  await assertRefusalsLogged(v.relay, from, peers.length);
  await assertUnharmed(t, v, 'a flood of 1000 connections');
});

test("hostile: a flood past the relay's handshake cap (4500 silent connections) does not stop new clients of an existing service", async (t) => {
  // Handshakes last 5 s here, so the flood holds its connections while a new client arrives.
  // Its clients are dialed back, and the dial-back must get through the flood (a
  // prewarmed connection, parked before it, would not need to).
  const v = await victim(t, ['--handshake-timeout', '5', '--dialback-timeout', '3'], ['--prewarm', '0']);
  const opened = await Promise.allSettled(Array.from({ length: 4500 }, () => Peer.open(t, v.relay.port)));
  const flood = opened.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  t.diagnostic(`${flood.length} of 4500 flood connections accepted by the kernel`);
  await v.relay.waitFor('stderr', /handshakes in progress/, 5000);
  const started = performance.now();
  const fresh = await dial(t, v.echo.publicPort);
  await assertEchoes(fresh, 'a new client during the flood\n', 2500);
  t.diagnostic(`new client echoed after ${Math.round(performance.now() - started)} ms`);
  for (const peer of flood) peer.socket.destroy();
  await assertUnharmed(t, v, 'a flood past the handshake cap');
});

test('hostile: a secret-protected relay gives nothing to a connection that skips, garbles or abandons the PROOF', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), ...RELAY_FLAGS, '--secret', 's3cret']);
  const cases: [string, RegExp][] = [
    ['PROOF ' + '0'.repeat(64), /^ERR auth /],
    ['PONG', /^ERR auth /],
    ['PROOF xyz', /^ERR bad-line /],
  ];
  for (const [answer, expected] of cases) {
    const peer = await Peer.open(t, relay.port);
    peer.send('HELLO 1 host=127.0.0.1');
    assert.match(await peer.nextLine(), /^AUTH [0-9a-f]{64}$/);
    peer.send(answer);
    assert.match(await peer.nextLine(), expected, `reply to ${answer}`);
    await peer.endsWithin(3000);
  }
  const silent = await Peer.open(t, relay.port);
  silent.send('HELLO 1 host=127.0.0.1');
  assert.match(await silent.nextLine(), /^AUTH /);
  assert.match(await silent.nextLine(HANDSHAKE_MS + MARGIN_MS), /^ERR timeout /, 'no PROOF within the handshake timeout');
  await silent.endsWithin(3000);
  // A peer that half-closes instead of answering AUTH is closed too, not kept half-open.
  const quitter = await Peer.open(t, relay.port);
  quitter.send('HELLO 1 host=127.0.0.1');
  assert.match(await quitter.nextLine(), /^AUTH /);
  quitter.socket.end();
  await quitter.endsWithin(HANDSHAKE_MS + MARGIN_MS);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port), '--secret', 's3cret']);
  const socket = await dial(t, echo.publicPort);
  await assertEchoes(socket, 'the right secret still works\n');
});
