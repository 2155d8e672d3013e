import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { listenViaRelay, type RelayError } from '../../src/index.js';
import { newToken } from '../../src/protocol/auth.js';
import { proxyHeaderV1, proxyHeaderV2 } from '../../src/protocol/proxy-header.js';
import { assertEchoes } from '../helpers/echo.js';
import { deadline, deferred, howItEnds, listenLocal, readAtLeast, within } from '../helpers/net.js';
import { Peer } from '../helpers/protocol.js';
import { inProcessRelay, relayed } from '../helpers/relay.js';

/** A client of the public port whose source address is `from` (any of 127.0.0.0/8 works on Linux). */
function clientFrom(t: TestContext, port: number, from: string): Socket {
  const socket = connect({ port, host: '127.0.0.1', localAddress: from, allowHalfOpen: true });
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  return socket;
}

/** An echo handler that records the address each relayed client had. */
function echoRecording(): { handler: (socket: Socket) => void; seen: string[] } {
  const seen: string[] = [];
  return {
    seen,
    handler: (socket) => {
      seen.push(`${socket.remoteAddress}:${socket.remotePort}`);
      socket.pipe(socket);
    },
  };
}

test('who may connect: relay, then service lists; refused clients are reset and never announced', async (t) => {
  const relay = await inProcessRelay(t, { allow: ['127.0.0.0/29'], deny: ['127.0.0.3'] });
  const echo = echoRecording();
  const { port } = await relayed(t, relay, echo.handler, { allow: ['127.0.0.4/30', '127.0.0.3'], deny: ['127.0.0.6'] });
  const allowed = clientFrom(t, port, '127.0.0.5');
  await once(allowed, 'connect', { signal: deadline(5000) });
  await assertEchoes(allowed, 'let in');
  for (const from of ['127.0.0.3', '127.0.0.6', '127.0.0.2', '127.0.0.9']) {
    assert.equal(await howItEnds(clientFrom(t, port, from)), 'reset', `a client from ${from}`);
  }
  assert.deepEqual(
    echo.seen.map((seen) => seen.split(':')[0]),
    ['127.0.0.5'],
  );
  assert.equal(relay.stats.refusals.get('ip-denied'), 4);
});

test('who may connect: a service without lists on a relay with lists is served as before', async (t) => {
  const relay = await inProcessRelay(t, { deny: ['127.0.0.7'] });
  const { port } = await relayed(t, relay, (socket) => socket.pipe(socket));
  const client = clientFrom(t, port, '127.0.0.1');
  await once(client, 'connect', { signal: deadline(5000) });
  await assertEchoes(client, 'old style');
  assert.equal(await howItEnds(clientFrom(t, port, '127.0.0.7')), 'reset');
});

test('who may connect: a service with lists stops at a relay whose OK does not list acl, and tells it LEAVE', async (t) => {
  const hello = deferred<string>();
  const relayPeer = deferred<Peer>();
  const { port } = await listenLocal(t, (socket) => {
    const peer = new Peer(socket);
    relayPeer.resolve(peer);
    void peer.nextLine().then((line) => {
      hello.resolve(line);
      // An older relay: it ignores allow= and knows no acl.
      socket.write(`OK 127.0.0.1:9001 data=9000 heartbeat=5000 resume=${newToken()} feat=rejoin,leave\n`);
    });
  });
  const registration = listenViaRelay(() => assert.fail('no client may be served'), { host: '127.0.0.1', port, allow: ['10.0.0.0/8'] });
  t.after(() => registration.close());
  let established = false;
  registration.on('established', () => (established = true));
  const [err] = (await once(registration, 'error', { signal: deadline(5000) })) as [RelayError];
  assert.equal(err.code, 'acl');
  assert.match(err.message, /relay does not support --allow\/--deny/);
  assert.match(await within(hello.promise, 5000, 'HELLO'), / feat=\S*acl\S* allow=10\.0\.0\.0\/8$/);
  assert.equal((await within(relayPeer.promise, 5000, 'peer')).socket.readable, true);
  assert.equal(await (await relayPeer.promise).nextLine(), 'LEAVE');
  assert.equal(established, false);
});

test('who may connect: a bad range from a service is refused with ERR bad-line quoting it', async (t) => {
  const relay = await inProcessRelay(t);
  const peer = new Peer(connect(relay.controlPort, '127.0.0.1'));
  t.after(() => peer.socket.destroy());
  peer.socket.write('HELLO 1 feat=acl allow=10.0.0.0/8,10.0.0.1/8\n');
  assert.equal(await peer.nextLine(), 'ERR bad-line allow= must be comma-separated CIDR ranges: "10.0.0.1/8" has bits set past its /8 (the range starts at 10.0.0.0/8)');
});

test('PROXY from a trusted balancer: v1 and v2 give the client address, limits count it, the header is taken off', async (t) => {
  const relay = await inProcessRelay(t, { publicProxyFrom: ['127.0.0.2'], maxClientsPerIp: 1, deny: ['198.51.100.66'] });
  const echo = echoRecording();
  const { port } = await relayed(t, relay, echo.handler);
  const viaBalancer = async (header: Buffer, payload: string): Promise<Socket> => {
    const socket = clientFrom(t, port, '127.0.0.2');
    await once(socket, 'connect', { signal: deadline(5000) });
    socket.write(Buffer.concat([header, Buffer.from(payload)]));
    return socket;
  };
  const ends = (clientAddress: string, clientPort: number) => ({ clientAddress, clientPort, serverAddress: clientAddress.includes(':') ? '::1' : '127.0.0.1', serverPort: port });
  const first = await viaBalancer(proxyHeaderV1(ends('198.51.100.7', 40001)), 'v1 payload');
  assert.equal((await readAtLeast(first, 10)).toString(), 'v1 payload');
  const second = await viaBalancer(proxyHeaderV2(ends('2001:db8::9', 40002)), 'v2 payload');
  assert.equal((await readAtLeast(second, 10)).toString(), 'v2 payload');
  assert.deepEqual(echo.seen, ['198.51.100.7:40001', '2001:db8::9:40002']);
  // The balancer's address holds two clients now; the limit of one is per client address.
  const again = await viaBalancer(proxyHeaderV1(ends('198.51.100.7', 40003)), 'x');
  assert.equal(await howItEnds(again), 'reset', 'a second client of 198.51.100.7, over --max-clients-per-ip 1');
  const denied = await viaBalancer(proxyHeaderV1(ends('198.51.100.66', 40004)), 'x');
  assert.equal(await howItEnds(denied), 'reset', 'a denied client address behind the balancer');
  const none = await viaBalancer(Buffer.alloc(0), 'GET / HTTP/1.1\r\n\r\n');
  assert.equal(await howItEnds(none), 'reset', 'no header from a listed balancer');
  assert.equal(relay.stats.refusals.get('clients-per-ip'), 1);
  assert.equal(relay.stats.refusals.get('ip-denied'), 1);
  assert.equal(relay.stats.refusals.get('proxy-header'), 1);
  assert.equal(echo.seen.length, 2);
});

test('PROXY from an unlisted address is bytes of the stream, never trusted', async (t) => {
  const relay = await inProcessRelay(t, { publicProxyFrom: ['127.0.0.2'], deny: ['198.51.100.7'] });
  const echo = echoRecording();
  const { port } = await relayed(t, relay, echo.handler);
  const socket = clientFrom(t, port, '127.0.0.3');
  await once(socket, 'connect', { signal: deadline(5000) });
  const header = proxyHeaderV1({ clientAddress: '198.51.100.7', clientPort: 1, serverAddress: '127.0.0.1', serverPort: port });
  socket.write(header);
  assert.deepEqual(await readAtLeast(socket, header.length), header);
  assert.equal(echo.seen[0]?.split(':')[0], '127.0.0.3');
});

test('PROXY from a trusted balancer that sends nothing is reset after the handshake timeout', async (t) => {
  const relay = await inProcessRelay(t, { publicProxyFrom: ['127.0.0.2'], handshakeTimeoutMs: 200 });
  const { port } = await relayed(t, relay, () => assert.fail('no client may be served'));
  const silent = clientFrom(t, port, '127.0.0.2');
  assert.equal(await howItEnds(silent, 5000), 'reset');
  assert.equal(relay.stats.refusals.get('proxy-header'), 1);
});
