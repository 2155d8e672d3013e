import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import type { RelayOptions } from '../../src/config/defaults.js';
import { formatMessage } from '../../src/protocol/format.js';
import type { Feature, Message } from '../../src/protocol/messages.js';
import { PublicDoor } from '../../src/relay/public-door.js';
import { ServiceSession } from '../../src/relay/service-session.js';
import { deferred, howItEnds, socketPair, within } from '../helpers/net.js';
import { nextConnect, Peer } from '../helpers/protocol.js';
import { testContext } from '../helpers/relay-context.js';

const SESSION_OK: Message = { kind: 'OK', host: '127.0.0.1', port: 5000, dataPort: 7000, heartbeatMs: 2000, resume: 'a'.repeat(32) };

/**
 * One ServiceSession on a manual clock, started on a real control connection whose far
 * end is `control` (it answers nothing by itself). Probes are off; the heartbeat is
 * 2 s and the dial-back timeout 5 s unless `options` says otherwise. Its door listens
 * nowhere: clients are handed to the session, or held, by the test. `ended` resolves
 * when the session calls its onClosed.
 */
async function startSession(t: TestContext, options: Partial<RelayOptions> = {}) {
  const rig = testContext({ heartbeatMs: 2000, dialbackTimeoutMs: 5000, probeIntervalMs: 0, ...options });
  const { near, far } = await socketPair(t);
  const control = new Peer(far);
  const door = new PublicDoor(rig.ctx, 5000, createServer(), () => undefined);
  const closed = deferred<ServiceSession>();
  const figures = rig.ctx.overview.figuresFor('127.0.0.1', 5000, undefined);
  const identity = { id: 's1', place: 5000, port: 5000, key: 'k'.repeat(64), warmToken: undefined, features: new Set<Feature>(), figures };
  const session = new ServiceSession(rig.ctx, identity, near, door, closed.resolve);
  session.start(SESSION_OK, Buffer.alloc(0));
  return { ...rig, control, door, session, ended: closed.promise };
}

/** The session's own log line when it ends, with the reason it gives. */
function leftReasons(logged: () => Record<string, unknown>[]): unknown[] {
  return logged()
    .filter((record) => record['msg'] === 'service left')
    .map((record) => record['reason']);
}

/**
 * The lines the relay wrote so far and not yet read: the service PINGs and reads up to
 * the PONG, since the relay handles lines in order.
 */
async function sentSoFar(control: Peer): Promise<string[]> {
  control.send('PING');
  const lines: string[] = [];
  for (let line = await control.nextLine(); line !== 'PONG'; line = await control.nextLine()) lines.push(line);
  return lines;
}

/** A public client as a door hands it over: `near` to give the session, `far` to see how it ends. */
async function publicClient(t: TestContext): Promise<{ near: Socket; far: Socket }> {
  return socketPair(t);
}

test('a session starts with OK on the control connection and takes over its door', async (t) => {
  const { control, door, session } = await startSession(t);
  assert.equal(`${await control.nextLine()}\n`, formatMessage(SESSION_OK));
  assert.equal(door.owner, session);
  assert.equal(session.closed, false);
});

test('the relay sends PING once per heartbeat interval, and not before', async (t) => {
  const { control, clock } = await startSession(t, { heartbeatMs: 2000 });
  await control.nextLine(); // OK
  clock.advance(1999);
  assert.deepEqual(await sentSoFar(control), []);
  clock.advance(1);
  assert.deepEqual(await sentSoFar(control), ['PING']);
  clock.advance(2000);
  assert.deepEqual(await sentSoFar(control), ['PING']);
});

test('a service silent for more than three heartbeat intervals is closed for no heartbeat', async (t) => {
  const { control, clock, session, ended, logged, door } = await startSession(t, { heartbeatMs: 2000 });
  await control.nextLine(); // OK
  clock.advance(6000);
  assert.equal(session.closed, false, 'three intervals of silence are still allowed');
  for (let i = 0; i < 3; i++) assert.equal(await control.nextLine(), 'PING');
  clock.advance(2000);
  assert.equal(session.closed, true);
  assert.equal(await within(ended, 2000, 'onClosed'), session);
  assert.equal(session.departure, 'gone', 'its port stays reserved: it may come back');
  assert.deepEqual(leftReasons(logged), ['no heartbeat for 6000 ms']);
  assert.equal(door.owner, undefined);
  assert.notEqual(await control.endsWithin(2000), undefined);
  assert.deepEqual(control.lines.slice(1), ['PING', 'PING', 'PING'], 'no ERR: a dead host would not read it');
});

test("a service's PONG gets no reply, its PING gets PONG, and either keeps it alive", async (t) => {
  const { control, clock, session } = await startSession(t, { heartbeatMs: 2000 });
  await control.nextLine(); // OK
  clock.advance(6000);
  for (let i = 0; i < 3; i++) assert.equal(await control.nextLine(), 'PING');
  // In one write, so both are handled in one turn and any answer to the PONG comes with the PING's.
  control.socket.write('PONG\nPING\n');
  assert.equal(await control.nextLine(), 'PONG');
  assert.deepEqual(control.lines.slice(4), ['PONG'], 'one PONG, for the PING: nothing answers a PONG');
  clock.advance(6000);
  assert.equal(session.closed, false, 'silence counts from the last line heard');
  clock.advance(2000);
  assert.equal(session.closed, true);
});

test('LEAVE ends the session as left for good, without a reply', async (t) => {
  const { control, session, ended, logged } = await startSession(t);
  await control.nextLine(); // OK
  control.send('LEAVE');
  assert.equal(await within(ended, 2000, 'onClosed'), session);
  assert.equal(session.departure, 'left');
  assert.deepEqual(leftReasons(logged), ['service left for good']);
  assert.notEqual(await control.endsWithin(2000), undefined);
  assert.deepEqual(control.lines, [formatMessage(SESSION_OK).trimEnd()]);
});

test('a message not valid on a control connection ends the session with ERR bad-line', async (t) => {
  const { control, session, ended } = await startSession(t);
  await control.nextLine(); // OK
  control.send('HELLO 1');
  assert.equal(await control.nextLine(), 'ERR bad-line HELLO is not valid here');
  assert.equal(await within(ended, 2000, 'onClosed'), session);
  assert.equal(session.departure, 'gone');
  assert.equal(await control.endsWithin(2000), 'end');
});

test('a line that is not the protocol ends the session with ERR bad-line too', async (t) => {
  const { control, ended } = await startSession(t);
  await control.nextLine(); // OK
  control.send('WHAT IS THIS');
  assert.match(await control.nextLine(), /^ERR bad-line /);
  await within(ended, 2000, 'onClosed');
});

test('a service that closes its control connection ends the session as gone', async (t) => {
  const { control, session, ended, logged } = await startSession(t);
  await control.nextLine(); // OK
  control.socket.end();
  assert.equal(await within(ended, 2000, 'onClosed'), session);
  assert.equal(session.departure, 'gone');
  assert.deepEqual(leftReasons(logged), ['service closed the control connection']);
});

test('a public client is announced with CONNECT, under a token the data port is waiting for', async (t) => {
  const { control, ctx, session } = await startSession(t);
  await control.nextLine(); // OK
  const client = await publicClient(t);
  session.takeClient(client.near);
  const connect = await nextConnect(control);
  assert.equal(connect.clientAddress, '127.0.0.1');
  assert.equal(connect.clientPort, client.far.localPort);
  assert.equal(session.waiting, 1);
  const entry = ctx.tokens.take(connect.token);
  assert.equal(entry?.kind, 'client');
  assert.equal(entry.owner, session);
  assert.equal(entry.client, client.near);
});

test('--max-clients: a client over the limit is reset and counted as clients', async (t) => {
  const { control, session, refusals } = await startSession(t, { maxClientsPerService: 1 });
  await control.nextLine(); // OK
  const [first, second] = [await publicClient(t), await publicClient(t)];
  session.takeClient(first.near);
  session.takeClient(second.near);
  assert.equal(await howItEnds(second.far), 'reset');
  assert.deepEqual(refusals(), ['clients']);
  await nextConnect(control);
  assert.deepEqual(await sentSoFar(control), [], 'no CONNECT for the refused client');
});

test('--max-pending: a client over the pending dial-backs is reset and counted as pending', async (t) => {
  const { control, session, refusals } = await startSession(t, { maxPendingPerService: 2 });
  await control.nextLine(); // OK
  const clients = [await publicClient(t), await publicClient(t), await publicClient(t)];
  for (const client of clients) session.takeClient(client.near);
  assert.equal(await howItEnds(clients[2]!.far), 'reset');
  assert.deepEqual(refusals(), ['pending']);
  assert.equal(session.waiting, 2);
});

test('a client whose service answers but never dials back is reset at the dial-back timeout', async (t) => {
  const { control, clock, session, refusals, door } = await startSession(t, { heartbeatMs: 2000, dialbackTimeoutMs: 5000 });
  await control.nextLine(); // OK
  const client = await publicClient(t);
  session.takeClient(client.near);
  await nextConnect(control);
  clock.advance(2000);
  assert.deepEqual(await sentSoFar(control), ['PING'], 'the service is heard after the CONNECT');
  clock.advance(3000);
  assert.equal(await howItEnds(client.far), 'reset');
  assert.deepEqual(refusals(), ['dialback-timeout']);
  assert.equal(session.waiting, 0);
  assert.equal(door.heldCount, 0);
  assert.equal(session.closed, false, 'one lost dial-back does not end the registration');
});

test('a client whose service has been silent since the CONNECT goes back to the door instead', async (t) => {
  const { control, clock, session, refusals, door, ctx } = await startSession(t, { heartbeatMs: 2000, dialbackTimeoutMs: 5000 });
  await control.nextLine(); // OK
  clock.advance(500);
  const client = await publicClient(t);
  session.takeClient(client.near);
  await nextConnect(control);
  clock.advance(5000);
  assert.equal(door.heldCount, 1, 'held: the heartbeat decides whether the service is dead');
  assert.equal(client.near.destroyed, false);
  assert.deepEqual(refusals(), []);
  assert.equal(ctx.stats.clientsTaken, 0, 'a held client is not counted against the limits');
  // Once the service speaks again, the held client gets a new CONNECT.
  const kinds = (await sentSoFar(control)).map((line) => line.split(' ')[0]);
  assert.deepEqual(kinds, ['PING', 'PING', 'CONNECT']);
  assert.equal(door.heldCount, 0);
  assert.equal(session.waiting, 1);
});

test('a session that ends (not for good) puts its waiting clients back at the door', async (t) => {
  const { control, session, door, refusals, ctx } = await startSession(t);
  await control.nextLine(); // OK
  const clients = [await publicClient(t), await publicClient(t)];
  for (const client of clients) session.takeClient(client.near);
  session.close('control connection closed');
  assert.equal(door.heldCount, 2);
  assert.deepEqual(
    clients.map((client) => client.near.destroyed),
    [false, false],
  );
  assert.equal(ctx.tokens.size, 0, 'their tokens are dead: the next registration announces them anew');
  assert.equal(ctx.stats.clientsTaken, 0);
  assert.deepEqual(refusals(), []);
});

test('a session that ends as left for good resets its waiting clients', async (t) => {
  const { control, session, door, ctx } = await startSession(t);
  await control.nextLine(); // OK
  const clients = [await publicClient(t), await publicClient(t)];
  for (const client of clients) session.takeClient(client.near);
  session.close('service left for good', undefined, 'left');
  assert.deepEqual(await Promise.all(clients.map((client) => howItEnds(client.far))), ['reset', 'reset']);
  assert.equal(door.heldCount, 0);
  assert.equal(ctx.tokens.size, 0);
});

test('a client of a session that has ended is held at the door, not announced', async (t) => {
  const { control, session, door } = await startSession(t);
  await control.nextLine(); // OK
  session.close('control connection closed');
  const client = await publicClient(t);
  session.takeClient(client.near);
  assert.equal(door.heldCount, 1);
  assert.equal(client.near.destroyed, false);
});

test('a parked IDLE connection is handed to the next client with its CLIENT line, and no CONNECT is sent', async (t) => {
  const { control, session, ctx } = await startSession(t);
  await control.nextLine(); // OK
  const idle = await socketPair(t);
  const service = new Peer(idle.far, { maxLines: 1 });
  assert.equal(session.addIdle(idle.near), undefined);
  const client = await publicClient(t);
  session.takeClient(client.near);
  const { localPort: clientPort, remotePort: serverPort } = client.far;
  assert.equal(await service.nextLine(), `CLIENT 127.0.0.1 ${clientPort} 127.0.0.1 ${serverPort}`);
  client.far.write('hello');
  assert.equal((await service.readBytes(5)).toString(), 'hello', 'the client is spliced with the parked connection');
  assert.deepEqual(await sentSoFar(control), [], 'no CONNECT: the service needs no dial-back');
  assert.equal(ctx.tokens.size, 0);
  assert.equal(ctx.tunnels.size, 1);
});
