import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { Relay } from '../../src/index.js';
import { deadline, eventually } from '../helpers/net.js';
import { registerRaw } from '../helpers/protocol.js';
import { inProcessRelay } from '../helpers/relay.js';

// Held clients are public clients the relay keeps open: they count against --max-tunnels
// with the taken ones, so no stranger can exhaust the relay through a departed service's door.

/** A service that registers and goes away (its port reserved): its door holds clients. */
async function departed(t: TestContext, relay: Relay): Promise<number> {
  const before = relay.stats.servicesActive;
  const { control, registration } = await registerRaw(t, relay.controlPort);
  control.socket.destroy();
  await eventually(() => relay.stats.servicesActive === before, 5000, 'the service to be away');
  return registration.publicPort;
}

interface Client {
  socket: Socket;
  /** How it ended, once it has: 'reset', or 'end' for a FIN. */
  ended: 'reset' | 'end' | undefined;
}

/** n clients of a port, each connected, each noting how it ends. */
async function clients(t: TestContext, port: number, n: number): Promise<Client[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const socket = connect({ port, host: '127.0.0.1' });
      const client: Client = { socket, ended: undefined };
      socket.on('error', (err: NodeJS.ErrnoException) => (client.ended ??= err.code === 'ECONNRESET' ? 'reset' : 'end'));
      socket.on('end', () => (client.ended ??= 'end'));
      t.after(() => socket.destroy());
      // A client refused at accept may see its reset before the connect completes.
      await once(socket, 'connect', { signal: deadline(5000) }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ECONNRESET') throw err;
      });
      return client;
    }),
  );
}

test('held clients count against --max-tunnels: two departed doors × 15 clients hold 20, the rest are reset and counted', async (t) => {
  const relay = await inProcessRelay(t, { maxTunnels: 20, maxPendingPerService: 15, holdTimeoutMs: 30_000 });
  const doors = [await departed(t, relay), await departed(t, relay)];
  const first = await clients(t, doors[0]!, 15);
  await eventually(() => relay.stats.clientsHeld === 15, 5000, 'the first door to hold its 15');
  const second = await clients(t, doors[1]!, 15);
  await eventually(() => second.filter((client) => client.ended !== undefined).length === 10, 5000, '10 clients of the second door to be refused');
  assert.deepEqual(new Set(second.map((client) => client.ended).filter((how) => how !== undefined)), new Set(['reset']), 'the clients past the cap are reset');
  assert.equal(relay.stats.clientsHeld, 20, 'held clients stop at the cap');
  assert.equal(relay.stats.refusals.get('tunnels'), 10, "counted as refusals of reason 'tunnels'");
  assert.equal(first.filter((client) => client.ended !== undefined).length, 0, 'the clients within the cap are still held');
});

test("a live service's new client is reset while held clients fill --max-tunnels", async (t) => {
  const relay = await inProcessRelay(t, { maxTunnels: 4, holdTimeoutMs: 30_000 });
  const door = await departed(t, relay);
  await clients(t, door, 4);
  await eventually(() => relay.stats.clientsHeld === 4, 5000, 'the door to hold 4');
  const live = await registerRaw(t, relay.controlPort);
  const [late] = await clients(t, live.registration.publicPort, 1);
  await eventually(() => late!.ended !== undefined, 5000, 'the late client to be refused');
  assert.equal(late!.ended, 'reset');
  assert.equal(relay.stats.refusals.get('tunnels'), 1);
});
