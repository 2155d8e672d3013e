import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { deferred, dial, within } from '../helpers/net.js';
import { inProcessRelay, relayed } from '../helpers/relay.js';
import { requireTools } from '../helpers/tools.js';
import { certPem } from '../helpers/tls.js';

test('TLS relay: a tunnel the relay cuts reaches the service as a reset, not a FIN', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const { cert, key } = await certPem(t);
  const relay = await inProcessRelay(t, { tls: { cert, key } });
  const ended = deferred<string>();
  const arrived = deferred<void>();
  const target = (socket: Socket): void => {
    socket.once('data', () => arrived.resolve());
    socket.once('end', () => ended.resolve('FIN'));
    socket.once('error', (err: NodeJS.ErrnoException) => ended.resolve(err.code ?? err.message));
  };
  const { port } = await relayed(t, relay, target, { tls: { ca: cert, servername: 'localhost' } });
  const client = await dial(t, port);
  client.write('hello');
  await within(arrived.promise, 5000, 'the first bytes at the service');
  await relay.cutTunnels();
  assert.equal(await within(ended.promise, 5000, 'the end of the service side'), 'ECONNRESET');
});
