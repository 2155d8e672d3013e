import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { FirstLineDeadlines } from '../../src/net/first-line-deadlines.js';
import { readFirstLineThen, type FirstLine } from '../../src/net/lines.js';
import { parseServiceLine } from '../../src/protocol/parse.js';
import { relayInfo, type RelayedClientInfo } from '../../src/index.js';
import { capturedLog } from '../helpers/log.js';
import { deadline, deferred, dial, echoThrough, eventually, randomData, readToEnd, sha256 } from '../helpers/net.js';
import { inProcessRelay, relayed } from '../helpers/relay.js';

// The short-connection path without its own timers, promises or getsockname
// (docs/benchmarks.md, "Issue 21, per connection"): the same behaviour, checked here.

for (const bind of ['127.0.0.1', undefined]) {
  for (const prewarm of [0, 2]) {
    test(`CLIENT line: a relayed client knows the address and port it dialed (relay ${bind === undefined ? 'on every address' : `bound to ${bind}`}, prewarm ${prewarm})`, async (t) => {
      const relay = await inProcessRelay(t, bind === undefined ? {} : { bind });
      const seen: (RelayedClientInfo | undefined)[] = [];
      const { port, tunnel } = await relayed(
        t,
        relay,
        (socket: Socket) => {
          seen.push(relayInfo(socket));
          socket.pipe(socket);
        },
        { prewarm },
      );
      if (prewarm > 0) await eventually(() => relay.stats.warmIdle >= prewarm, 5000, 'the warm pool filled');
      for (let i = 0; i < 3; i++) {
        const client = await dial(t, port);
        const clientPort = client.localPort;
        const data = randomData(1000 + i);
        assert.equal(sha256(await echoThrough(client, data)), sha256(data));
        assert.deepEqual(seen[i], { clientAddress: '127.0.0.1', clientPort, serverAddress: '127.0.0.1', serverPort: port });
      }
      if (prewarm > 0) assert.ok(tunnel.clientCounts.prewarmed > 0, 'no client came on a prewarmed connection');
    });
  }
}

test('library: a connection handler that throws costs that client only: logged, and the next client is served', async (t) => {
  const relay = await inProcessRelay(t);
  const { logger, records } = capturedLog();
  let first = true;
  const { port } = await relayed(
    t,
    relay,
    (socket: Socket) => {
      if (first) {
        first = false;
        socket.destroy();
        throw new Error('handler bug');
      }
      socket.pipe(socket);
    },
    { logger },
  );
  const broken = await dial(t, port);
  broken.write('x');
  // The service closed it: a FIN reaches the client (which may keep its own side open).
  await readToEnd(broken, 5000);
  await eventually(() => records.some((r) => r['msg'] === 'delivering a relayed client failed'), 5000, 'the failure logged');
  const client = await dial(t, port);
  const data = randomData(5000);
  assert.equal(sha256(await echoThrough(client, data)), sha256(data));
});

test('first-line deadlines: reads not done in time end as timeouts, oldest first, and reads done in time are untouched', async (t) => {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
  t.after(() => server.close());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening', { signal: deadline(5000) });
  const port = (server.address() as AddressInfo).port;
  const timeoutMs = 300;
  const deadlines = new FirstLineDeadlines(timeoutMs);
  const results = new Map<number, { result: FirstLine; afterMs: number }>();
  const allDone = deferred<void>();
  const order: number[] = [];
  let accepted = 0;
  server.on('connection', (socket: Socket) => {
    socket.on('error', () => {});
    t.after(() => socket.destroy());
    const index = accepted++;
    const began = performance.now();
    deadlines.watch(socket);
    readFirstLineThen(socket, parseServiceLine, undefined, (_socket, result) => {
      deadlines.forget(socket);
      results.set(index, { result, afterMs: performance.now() - began });
      order.push(index);
      if (results.size === 4) allDone.resolve();
    });
  });
  // 0 and 2 stay silent, 1 and 3 send their line at once.
  const open = async (line: string | undefined): Promise<void> => {
    const client = connect(port, '127.0.0.1');
    client.on('error', () => {});
    t.after(() => client.destroy());
    await once(client, 'connect', { signal: deadline(5000) });
    if (line !== undefined) client.write(line);
    await eventually(() => accepted > opened, 5000, 'accepted');
    opened++;
  };
  let opened = 0;
  const token = 'ab'.repeat(16);
  await open(undefined);
  await open(`DATA ${token}\n`);
  await open(undefined);
  await open(`IDLE ${token}\n`);
  await Promise.race([allDone.promise, once(server, 'never', { signal: deadline(5000) })]);
  assert.deepEqual(
    order.filter((i) => i === 0 || i === 2),
    [0, 2],
    'the silent ones end oldest first',
  );
  for (const silent of [0, 2]) {
    const { result, afterMs } = results.get(silent)!;
    assert.deepEqual(result, { ok: false, code: 'timeout', reason: `no complete line within ${timeoutMs} ms` });
    assert.ok(afterMs >= timeoutMs - 5 && afterMs < timeoutMs + 1500, `silent connection ${silent} ended after ${afterMs} ms`);
  }
  for (const [spoke, kind] of [
    [1, 'DATA'],
    [3, 'IDLE'],
  ] as const) {
    const { result, afterMs } = results.get(spoke)!;
    assert.ok(result.ok && result.msg.kind === kind && result.rest.length === 0, `connection ${spoke}: ${JSON.stringify(result)}`);
    assert.ok(afterMs < timeoutMs, `connection ${spoke} waited ${afterMs} ms`);
  }
});
