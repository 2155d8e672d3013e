import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { assertNewClientEchoes } from '../helpers/echo.js';
import { inProcessRelay, relayed } from '../helpers/relay.js';
import { certPem } from '../helpers/tls.js';
import { requireTools } from '../helpers/tools.js';

/** Relays an echo handler over TLS and reports, per delivered client, whether its data connection resumed a session. */
async function tlsEcho(t: TestContext, prewarm?: number): Promise<{ port: number; resumed: boolean[] }> {
  const pem = await certPem(t);
  const relay = await inProcessRelay(t, { tls: pem });
  const resumed: boolean[] = [];
  const handler = (socket: Socket): void => {
    resumed.push((socket as TLSSocket).isSessionReused());
    socket.pipe(socket);
  };
  const { port } = await relayed(t, relay, handler, { tls: { ca: pem.cert, servername: 'localhost' }, ...(prewarm === undefined ? {} : { prewarm }) });
  return { port, resumed };
}

test('tls: dial-backs resume the TLS session of the connections before them instead of a full handshake', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const { port, resumed } = await tlsEcho(t);
  for (let i = 0; i < 4; i++) await assertNewClientEchoes(t, port, `client ${i}\n`);
  assert.equal(resumed.length, 4);
  // The control connection's handshake went to the control port; the data port's first
  // dial-back may have to do a full one (one cache entry per port), every later one resumes.
  assert.deepEqual(resumed.slice(1), [true, true, true], `resumed: ${resumed.join(',')}`);
});

test('tls: prewarmed data connections resume sessions too', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const { port, resumed } = await tlsEcho(t, 2);
  for (let i = 0; i < 4; i++) await assertNewClientEchoes(t, port, `client ${i}\n`);
  assert.equal(resumed.length, 4);
  assert.ok(resumed.filter(Boolean).length >= 2, `resumed: ${resumed.join(',')}`);
});
