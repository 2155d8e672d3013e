import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Server, Socket } from 'node:net';
import { silentLogger } from '../../src/log.js';
import { PublicDoor, type DoorOwner } from '../../src/relay/public-door.js';
import { testContext } from '../helpers/relay-context.js';

/** A socket stand-in that records how it ended: held clients are never read, only passed on or reset. */
function fakeClient(name: string): Socket & { name: string; ended?: string } {
  const client = new EventEmitter() as Socket & { name: string; ended?: string };
  Object.assign(client, {
    name,
    destroyed: false,
    remoteAddress: '127.0.0.1',
    remotePort: 1,
    resetAndDestroy() {
      client.ended = 'reset';
      (client as { destroyed: boolean }).destroyed = true;
    },
    destroy() {
      client.ended ??= 'destroyed';
      (client as { destroyed: boolean }).destroyed = true;
    },
  });
  return client;
}

function setUp(options = { holdTimeoutMs: 10_000, maxPendingPerService: 3 }) {
  const { ctx, clock, refusals } = testContext(options);
  const stats = ctx.stats;
  const server = new EventEmitter() as Server & { closed?: boolean };
  server.close = () => {
    server.closed = true;
    return server;
  };
  const door = new PublicDoor(ctx, 5000, server, () => undefined);
  const taken: string[] = [];
  const owner: DoorOwner = { log: silentLogger, takeClient: (client) => taken.push((client as unknown as { name: string }).name) };
  return { clock, refusals, stats, server, door, taken, owner };
}

test('a door without a service holds its clients, and hands them to the next one in arrival order', () => {
  const { server, door, taken, owner, stats } = setUp();
  for (const name of ['a', 'b', 'c']) server.emit('connection', fakeClient(name));
  assert.equal(door.heldCount, 3);
  assert.equal(stats.clientsHeld, 3);
  door.open(owner);
  assert.deepEqual(taken, ['a', 'b', 'c']);
  assert.equal(stats.clientsHeld, 0);
  server.emit('connection', fakeClient('d'));
  assert.deepEqual(taken, ['a', 'b', 'c', 'd'], 'with a service present, clients go straight to it');
});

test('a client held past the hold timeout is reset (not closed with a FIN) and counted', () => {
  const { clock, server, door, refusals, stats } = setUp();
  const early = fakeClient('early');
  server.emit('connection', early);
  clock.advance(4000);
  const late = fakeClient('late');
  server.emit('connection', late);
  clock.advance(6000);
  assert.equal(early.ended, 'reset');
  assert.equal(late.ended, undefined, 'each client has its own timeout');
  assert.deepEqual(refusals(), ['hold-timeout']);
  assert.equal(door.heldCount, 1);
  assert.equal(stats.clientsHeld, 1);
  clock.advance(4000);
  assert.equal(late.ended, 'reset');
  assert.equal(clock.pendingTimers, 0);
});

test('held clients count against the pending limit: the next one is reset at once', () => {
  const { server, door, refusals } = setUp();
  for (const name of ['a', 'b', 'c']) server.emit('connection', fakeClient(name));
  const extra = fakeClient('extra');
  server.emit('connection', extra);
  assert.equal(extra.ended, 'reset');
  assert.deepEqual(refusals(), ['pending']);
  assert.equal(door.heldCount, 3);
});

test('closing the door (grace over, or the service left) stops listening and resets every held client', () => {
  const { clock, server, door, refusals, stats } = setUp();
  const clients = ['a', 'b'].map(fakeClient);
  for (const client of clients) server.emit('connection', client);
  door.close('service left');
  assert.equal(server.closed, true);
  assert.deepEqual(
    clients.map((client) => client.ended),
    ['reset', 'reset'],
  );
  assert.deepEqual(refusals(), ['hold-timeout', 'hold-timeout']);
  assert.equal(stats.clientsHeld, 0);
  assert.equal(clock.pendingTimers, 0, 'no hold timer left behind');
});

test('a door that stops accepting for a successor gives up its held clients untouched', () => {
  const { clock, server, door } = setUp();
  const clients = ['a', 'b'].map(fakeClient);
  for (const client of clients) server.emit('connection', client);
  const handedOver = door.stopAccepting();
  assert.deepEqual(
    handedOver.map((client) => (client as unknown as { name: string }).name),
    ['a', 'b'],
  );
  assert.deepEqual(
    clients.map((client) => client.ended),
    [undefined, undefined],
  );
  assert.equal(clock.pendingTimers, 0);
});

test('a service that leaves vacates the door: the clients after it are held again', () => {
  const { server, door, taken, owner } = setUp();
  door.open(owner);
  server.emit('connection', fakeClient('a'));
  door.vacate(owner);
  server.emit('connection', fakeClient('b'));
  assert.deepEqual(taken, ['a']);
  assert.equal(door.heldCount, 1);
});
