import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { listenViaRelay } from '../../src/index.js';
import { deadline, dial, echoThrough, eventually } from '../helpers/net.js';
import { inProcessRelay, relayed } from '../helpers/relay.js';

test('a registered service that floods PINGs and never reads its control connection is dropped, memory bounded', async (t) => {
  const relay = await inProcessRelay(t);
  const abuser = await dial(t, relay.controlPort);
  abuser.write('HELLO 1\n');
  abuser.pause(); // never reads: every PONG the relay writes stays queued on its side
  await eventually(() => relay.serviceCount === 1, 5000, 'the registration');
  const heapBefore = process.memoryUsage().rss;
  const flood = Buffer.from('PING\n'.repeat(13_107)); // 64 KiB
  let sent = 0;
  // The kernel's socket buffers absorb the first tens of MiB of PONGs; after that the
  // relay must give up on this service rather than queue them in its own memory.
  while (!abuser.destroyed && relay.serviceCount > 0 && sent < 512 * 1024 * 1024) {
    sent += flood.length;
    if (!abuser.write(flood)) {
      // Loopback TCP can sit on a closed window for seconds (zero-window probes back off):
      // a short wait here made the test flaky, with or without a relay fault.
      const drained = await once(abuser, 'drain', { signal: AbortSignal.timeout(10_000) }).then(
        () => true,
        () => false,
      );
      if (!drained) break;
    }
  }
  // The relay may still be reading what the kernel buffered when the writer stopped;
  // the decision it must reach is to drop this service.
  await eventually(() => relay.serviceCount === 0, 15_000, `the flooding service to be dropped (sent ${(sent / 1048576).toFixed(0)} MiB)`);
  const grownMiB = (process.memoryUsage().rss - heapBefore) / 1024 / 1024;
  assert.ok(grownMiB < 100, `relay process grew ${grownMiB.toFixed(0)} MiB while flooded (sent ${(sent / 1048576).toFixed(0)} MiB)`);
});

test('with a secret, strangers holding unauthenticated HELLOs cannot use up the service slots', async (t) => {
  const relay = await inProcessRelay(t, { secret: 's3cret', maxServices: 2 });
  const strangers: Socket[] = [];
  for (let i = 0; i < 6; i++) {
    const socket = connect(relay.controlPort, '127.0.0.1');
    socket.on('error', () => {});
    t.after(() => socket.destroy());
    socket.write('HELLO 1\n'); // and never a PROOF
    strangers.push(socket);
  }
  await Promise.all(strangers.map((socket) => once(socket, 'data', { signal: deadline(5000) }))); // each got its AUTH
  const { port } = await relayed(t, relay, (socket: Socket) => socket.pipe(socket), { secret: 's3cret' });
  const client = await dial(t, port);
  assert.equal((await echoThrough(client, Buffer.from('still served'))).toString(), 'still served');
  // And the limit still holds for authenticated services.
  await relayed(t, relay, () => {}, { secret: 's3cret' });
  const third = listenViaRelay(() => {}, { host: '127.0.0.1', port: relay.controlPort, secret: 's3cret', backoff: { initialMs: 5000, maxMs: 5000 } });
  t.after(() => third.close());
  await eventually(() => (relay.stats.refusals.get('limit') ?? 0) > 0, 5000, 'the third service to be refused for the limit');
  assert.equal(relay.serviceCount, 2);
});
