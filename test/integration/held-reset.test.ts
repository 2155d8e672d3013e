import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { deadline, eventually } from '../helpers/net.js';
import { nextConnect, registerRaw } from '../helpers/protocol.js';
import { inProcessRelay } from '../helpers/relay.js';

test('a client held while its service is away, that resets before the service is back, is never announced', async (t) => {
  const relay = await inProcessRelay(t);
  const first = await registerRaw(t, relay.controlPort);
  const { publicPort, resume } = first.registration;
  first.control.socket.destroy();
  await eventually(() => relay.stats.servicesActive === 0, 5000, 'the service to be away');

  const gone = connect({ port: publicPort, host: '127.0.0.1' });
  gone.on('error', () => {});
  await once(gone, 'connect', { signal: deadline(5000) });
  await eventually(() => relay.stats.clientsHeld === 1, 5000, 'the first client to be held');
  const goneClosed = once(gone, 'close');
  gone.resetAndDestroy();
  await goneClosed;
  const stays = connect({ port: publicPort, host: '127.0.0.1' });
  stays.on('error', () => {});
  t.after(() => stays.destroy());
  await once(stays, 'connect', { signal: deadline(5000) });
  await eventually(() => relay.stats.clientsHeld === 2, 5000, 'the second client to be held');

  const back = await registerRaw(t, relay.controlPort, { hello: `HELLO 1 host=127.0.0.1 resume=${resume}` });
  assert.equal(back.registration.publicPort, publicPort);
  const announced = await nextConnect(back.control);
  assert.equal(announced.clientPort, stays.localPort, 'the first CONNECT is for the client still there');
});
