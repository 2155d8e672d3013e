import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { dial, echoThrough, eventually } from '../helpers/net.js';
import { inProcessRelay, relayed } from '../helpers/relay.js';
import { registerRaw } from '../helpers/protocol.js';
import type { Relay } from '../../src/index.js';
import { AUTO_FLOOR } from '../../src/client/warm-sizer.js';

/** `clients` public clients at once, each echoing a few bytes; resolves when all have. */
async function burst(t: TestContext, port: number, clients: number): Promise<void> {
  await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const client = await dial(t, port);
      assert.equal((await echoThrough(client, Buffer.from(`client ${i}`))).toString(), `client ${i}`);
    }),
  );
}

const servedWarm = (relay: Relay): number => relay.stats.dialbackCounts[0]!;

test('prewarm auto: parks a small floor when idle and grows to serve a burst from parked connections', async (t) => {
  const relay = await inProcessRelay(t);
  const { port, tunnel } = await relayed(t, relay, (socket: Socket) => socket.pipe(socket), { prewarm: 'auto' });
  await eventually(() => relay.stats.warmIdle === AUTO_FLOOR, 5000, `the floor of ${AUTO_FLOOR} parked connection`);
  await burst(t, port, 12);
  // The burst taught the pool its size: about the burst (a loaded machine may spread it out), parked again.
  await eventually(() => relay.stats.warmIdle >= 10, 5000, `a pool of 10 or more (have ${relay.stats.warmIdle})`);
  const before = servedWarm(relay);
  await burst(t, port, 12);
  assert.ok(servedWarm(relay) - before >= 10, `only ${servedWarm(relay) - before} of the second burst found a parked connection`);
  assert.equal(tunnel.clientCounts.clients, 24);
  // The floor, whatever the pool grew into during the first burst, and the second burst.
  assert.ok(tunnel.clientCounts.prewarmed >= 12, `prewarmed ${tunnel.clientCounts.prewarmed}`);
});

test("prewarm auto: never parks more than the relay's --max-warm, and stops asking", async (t) => {
  const relay = await inProcessRelay(t, { maxWarmPerService: 4 });
  // Each refusal the service has taken in (it lowers its ceiling by one and says so).
  let learned = 0;
  const logger = pino(
    { level: 'warn' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        if (chunk.toString().includes('relay allows fewer prewarmed connections than asked')) learned++;
        done();
      },
    }),
  );
  const { port } = await relayed(t, relay, (socket: Socket) => socket.pipe(socket), { prewarm: 'auto', logger });
  const limitRefusals = (): number => relay.stats.refusals.get('limit') ?? 0;
  await burst(t, port, 16);
  // Not only 4 parked: every refusal of the first burst's surplus must also have reached
  // the service, or a late one would be counted as the second burst's.
  await eventually(() => relay.stats.warmIdle === 4 && limitRefusals() > 0 && learned === limitRefusals(), 5000, '4 parked connections, every refusal taken in');
  const refusals = limitRefusals();
  assert.ok(refusals > 0, 'the pool tried to grow past the limit');
  await burst(t, port, 16);
  await eventually(() => relay.stats.warmIdle === 4, 5000, '4 parked connections again');
  assert.equal(relay.stats.refusals.get('limit') ?? 0, refusals, 'the pool asked past the limit again');
});

test('a relay with --max-warm 0 gives no prewarm key: the default pool parks nothing and clients are dialed back', async (t) => {
  const relay = await inProcessRelay(t, { maxWarmPerService: 0 });
  const { control } = await registerRaw(t, relay.controlPort, { hello: 'HELLO 1 host=127.0.0.1 warm=64' });
  assert.doesNotMatch(control.lines[0]!, /warm=/, 'no prewarm key in OK');
  const { port, tunnel } = await relayed(t, relay, (socket: Socket) => socket.pipe(socket));
  await burst(t, port, 2);
  assert.deepEqual(tunnel.clientCounts, { clients: 2, prewarmed: 0 });
  assert.equal(relay.stats.warmIdle, 0);
  assert.equal(relay.stats.refusals.get('limit') ?? 0, 0, 'no IDLE was even tried');
});
