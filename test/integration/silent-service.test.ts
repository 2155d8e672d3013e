import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dial, eventually, readAtLeast } from '../helpers/net.js';
import { Peer, dialData, nextConnect, parseOk } from '../helpers/protocol.js';
import { inProcessRelay } from '../helpers/relay.js';

test('a client waiting for the dial-back of a service that fell silent is held past the dial-back timeout, and served by the registration that replaces it', async (t) => {
  // --max-tunnels 1: the one client, taken again by the new registration, must not count against itself.
  const relay = await inProcessRelay(t, { dialbackTimeoutMs: 300, heartbeatMs: 400, maxTunnels: 1 });
  // A service whose host dies silently: it registered, then never answers anything.
  const silent = await Peer.open(t, relay.controlPort);
  silent.send('HELLO 1 host=127.0.0.1');
  const first = parseOk(await silent.nextLine());
  const client = await dial(t, first.publicPort);
  client.write('still here\n');
  await nextConnect(silent);
  let closed = false;
  client.once('close', () => (closed = true));

  // The heartbeat (3 x 400 ms) decides, not the 300 ms dial-back timeout.
  await eventually(() => relay.serviceCount === 0, 5000, 'the heartbeat to drop the silent service');
  assert.equal(closed, false, 'the client was closed before the heartbeat declared its service dead');

  const back = await Peer.open(t, relay.controlPort, { autoPong: true });
  back.send(`HELLO 1 host=127.0.0.1 port=${first.publicPort} resume=${first.resume}`);
  const again = parseOk(await back.nextLine());
  assert.equal(again.publicPort, first.publicPort);
  const { token } = await nextConnect(back);
  const data = await dialData(t, again.dataPort, `DATA ${token}`);
  assert.match(data.reply, /^CLIENT /);
  assert.equal((await data.peer.readBytes(11, 5000)).toString(), 'still here\n');
  data.peer.socket.write('answered\n');
  assert.equal((await readAtLeast(client, 9, 5000)).toString(), 'answered\n');
  // Taken by two registrations, counted once: one client, then none.
  assert.equal(relay.stats.clientsTaken, 1);
  client.end();
  data.peer.socket.end();
  await eventually(() => relay.stats.clientsTaken === 0, 5000, 'the client uncounted once it closed');
});
