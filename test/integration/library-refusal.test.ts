import { test } from 'node:test';
import assert from 'node:assert/strict';
import { within } from '../helpers/net.js';
import { inProcessRelay } from '../helpers/relay.js';
import { listenViaRelay, RegistrationRefusedError } from '../../src/index.js';

test('permanent refusal: a wrong secret rejects established() with the auth error, also when asked later, and emits close', async (t) => {
  const relay = await inProcessRelay(t, { secret: 'right' });
  const tunnel = listenViaRelay(() => {}, { host: '127.0.0.1', port: relay.controlPort, secret: 'wrong' });
  t.after(() => tunnel.close());
  // Not events.once: it rejects on the 'error' event this test expects.
  const closed = new Promise<void>((resolve) => tunnel.once('close', resolve));
  const errors: Error[] = [];
  tunnel.on('error', (err: Error) => errors.push(err));
  const waiting = tunnel.established();
  await assert.rejects(within(waiting, 5000, 'established() to settle'), (err: Error) => err instanceof RegistrationRefusedError && err.code === 'auth');
  await within(closed, 5000, 'close');
  assert.equal(errors.length, 1);
  await assert.rejects(tunnel.established(), (err: Error) => err instanceof RegistrationRefusedError && err.code === 'auth');
});

test('permanent refusal without an error listener: established() still rejects with the auth error and close is emitted', async (t) => {
  const relay = await inProcessRelay(t, { secret: 'right' });
  const tunnel = listenViaRelay(() => {}, { host: '127.0.0.1', port: relay.controlPort });
  t.after(() => tunnel.close());
  await within(new Promise<void>((resolve) => tunnel.once('close', resolve)), 5000, 'close');
  await assert.rejects(tunnel.established(), /authentication failed/);
});
