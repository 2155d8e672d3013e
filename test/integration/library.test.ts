import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, get } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { assertEchoes } from '../helpers/echo.js';
import { deadline, deferred, dial, echoThrough, eventually, randomData, readToEnd, sha256, within } from '../helpers/net.js';
import { controlProxy, inProcessRelay, relayed } from '../helpers/relay.js';
import { certPem } from '../helpers/tls.js';
import { requireTools } from '../helpers/tools.js';
import { listenViaRelay, type Relay, type RelayClientOptions } from '../../src/index.js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from '../../src/log.js';

/**
 * An echo service whose control connection runs through a proxy the test can cut, and
 * that re-registers within milliseconds; cut() resolves with its next public port.
 */
async function cuttableEcho(t: TestContext, relay: Relay, options: Partial<RelayClientOptions> = {}): Promise<{ port: number; cut: () => Promise<number> }> {
  const proxy = await controlProxy(t, relay.controlPort);
  const { tunnel, port } = await relayed(t, relay, (socket: Socket) => socket.pipe(socket), { port: proxy.port, backoff: { initialMs: 10, maxMs: 50 }, ...options });
  const cut = async (): Promise<number> => {
    const again = once(tunnel, 'established', { signal: deadline(5000) });
    proxy.cut();
    const [address] = (await again) as [{ port: number }];
    return address.port;
  };
  return { port, cut };
}

test('library: an http.Server relayed with one changed line answers requests and sees the real client address', async (t) => {
  const relay = await inProcessRelay(t);
  const server = createHttpServer((req, res) => res.end(`hello ${req.socket.remoteAddress} ${req.url}`));
  const { port } = await relayed(t, relay, server);
  const body = await new Promise<string>((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/path?q=1', agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
  assert.equal(body, 'hello 127.0.0.1 /path?q=1');
});

test('library: a net.Server with a connection callback gets an ordinary socket with the client address and port', async (t) => {
  const relay = await inProcessRelay(t);
  const seen: { address?: string | undefined; port?: number | undefined; family?: string | undefined } = {};
  const server = createNetServer((socket) => {
    seen.address = socket.remoteAddress;
    seen.port = socket.remotePort;
    seen.family = socket.remoteFamily;
    socket.pipe(socket);
  });
  const { port } = await relayed(t, relay, server);
  const client = await dial(t, port);
  const clientPort = client.localPort;
  const data = randomData(1024 * 1024);
  assert.equal(sha256(await echoThrough(client, data)), sha256(data));
  assert.equal(seen.address, '127.0.0.1');
  assert.equal(seen.port, clientPort);
  assert.equal(seen.family, 'IPv4');
});

test('library: a tls.Server relayed as is completes TLS handshakes end to end', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const { cert, key } = await certPem(t);
  const server = createTlsServer({ key, cert }, (socket) => socket.end(`secure hello to ${socket.remoteAddress}`));
  const relay = await inProcessRelay(t);
  const { port } = await relayed(t, relay, server);
  const client = tlsConnect({ host: '127.0.0.1', port, ca: cert, servername: 'localhost' });
  t.after(() => client.destroy());
  await once(client, 'secureConnect', { signal: deadline(5000) });
  const chunks: Buffer[] = [];
  client.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(client, 'end', { signal: deadline(5000) });
  assert.equal(Buffer.concat(chunks).toString(), 'secure hello to 127.0.0.1');
});

test('library: bytes the client sends before the service dials back are not lost', async (t) => {
  const relay = await inProcessRelay(t);
  const { port } = await relayed(t, relay, (socket: Socket) => socket.pipe(socket));
  const client = await dial(t, port);
  // Written at once, before any dial-back can have happened, and the FIN with it.
  client.end('early bytes');
  assert.equal((await readToEnd(client)).toString(), 'early bytes');
});

test('prewarm: clients are served from idle data connections and the pool refills', async (t) => {
  const relay = await inProcessRelay(t);
  const { port } = await relayed(t, relay, (socket: Socket) => socket.pipe(socket), { prewarm: 4 });
  for (let round = 0; round < 12; round++) {
    const client = await dial(t, port);
    const data = randomData(4096 + round);
    assert.equal(sha256(await echoThrough(client, data)), sha256(data));
  }
  // Every dial-back counted with zero latency went through an idle connection.
  assert.ok(relay.stats.dialbackCounts[0]! >= 8, `only ${relay.stats.dialbackCounts[0]} clients used a prewarmed connection`);
});

test('stable address: a service that re-registers after losing its control connection keeps its public port and open tunnels', async (t) => {
  const relay = await inProcessRelay(t);
  const echo = await cuttableEcho(t, relay);
  const open = await dial(t, echo.port);
  await assertEchoes(open, 'before ', 10_000);

  const second = await echo.cut();
  assert.equal(second, echo.port);

  // The tunnel opened before the blip still works, and so does a new one.
  open.end('after');
  assert.equal((await readToEnd(open)).toString(), 'after');
  const fresh = await dial(t, second);
  assert.equal((await echoThrough(fresh, Buffer.from('new'))).toString(), 'new');
});

test('prewarm above the relay limit: the library keeps what the relay allows instead of retrying forever', async (t) => {
  const relay = await inProcessRelay(t, { maxWarmPerService: 2 });
  const capped = deferred<Record<string, unknown>>();
  const logger = pino(
    { level: 'warn' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        const record = JSON.parse(chunk.toString()) as Record<string, unknown>;
        if (String(record['msg']).includes('fewer prewarmed connections') && record['kept'] === 2) capped.resolve(record);
        done();
      },
    }),
  ) as Logger;
  await relayed(t, relay, (socket: Socket) => socket.pipe(socket), { prewarm: 5, logger });
  const record = await within(capped.promise, 5000, 'the library to notice the limit');
  assert.equal(record['asked'], 5);
  assert.equal(record['kept'], 2);
  assert.equal(relay.stats.refusals.get('limit'), 3);
});

test('prewarm survives a reconnect: the new registration parks a fresh pool and clients use it', async (t) => {
  const relay = await inProcessRelay(t);
  const echo = await cuttableEcho(t, relay, { prewarm: 3 });
  await eventually(() => relay.stats.warmIdle === 3, 5000, 'the first pool to park');

  const port = await echo.cut();
  await eventually(() => relay.stats.warmIdle === 3, 5000, 'a fresh pool for the new registration');
  const usedBefore = relay.stats.dialbackCounts[0]!;
  const client = await dial(t, port);
  assert.equal((await echoThrough(client, Buffer.from('warm'))).toString(), 'warm');
  assert.equal(relay.stats.dialbackCounts[0], usedBefore + 1, 'the client went through a prewarmed connection');
});

test('close() before registration: established() rejects instead of hanging, and no connection is left open', async (t) => {
  const relay = await inProcessRelay(t);
  const tunnel = listenViaRelay(() => {}, { host: '127.0.0.1', port: relay.controlPort, prewarm: 2 });
  const waiting = tunnel.established();
  tunnel.close();
  await assert.rejects(within(waiting, 2000, 'established() to settle'), /closed before it was established/);
  await assert.rejects(tunnel.established(), /closed/);
});
