import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ControlConnection, type ControlEvents, type ControlSettings } from '../../src/client/control.js';
import { helloFor, type Registered } from '../../src/client/handshake.js';
import { RegistrationRefusedError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { computeProof, newNonce, newToken } from '../../src/protocol/auth.js';
import { formatMessage } from '../../src/protocol/format.js';
import { ManualClock } from '../helpers/clock.js';
import { deferred, listenLocal, within } from '../helpers/net.js';
import { Peer } from '../helpers/protocol.js';

const RESUME = '0123456789abcdef0123456789abcdef';

/** What the connection reported, in order, and when it was lost. */
class Reports {
  readonly registered: Registered[] = [];
  readonly connects: string[] = [];
  readonly probes: string[] = [];
  readonly nodeLists: string[][] = [];
  readonly refusals: Error[] = [];
  readonly #lost = deferred<{ reason: string; rejoin: boolean }>();
  lostCount = 0;

  readonly events: ControlEvents = {
    registered: (msg) => this.registered.push(msg),
    connect: (token) => this.connects.push(token),
    probe: (token) => this.probes.push(token),
    nodes: (nodes) => this.nodeLists.push(nodes),
    refused: (err) => this.refusals.push(err),
    lost: (reason, rejoin) => {
      this.lostCount++;
      this.#lost.resolve({ reason, rejoin });
    },
  };

  lost(): Promise<{ reason: string; rejoin: boolean }> {
    return within(this.#lost.promise, 5000, 'the control connection to be lost');
  }
}

/** A control connection to a relay played by the test, which has read the HELLO. */
async function open(t: TestContext, settings: Partial<ControlSettings> = {}): Promise<{ control: ControlConnection; relay: Peer; reports: Reports; hello: string }> {
  const accepted = deferred<Peer>();
  const { port } = await listenLocal(t, (socket) => accepted.resolve(new Peer(socket)));
  const reports = new Reports();
  const control = new ControlConnection(
    {
      relay: { host: '127.0.0.1', port },
      hello: helloFor({ host: '127.0.0.1', port }, undefined, undefined),
      secret: undefined,
      handshakeTimeoutMs: 5000,
      log: silentLogger,
      ...settings,
    },
    reports.events,
  );
  t.after(() => control.close(false));
  const relay = await within(accepted.promise, 5000, 'the control connection to arrive');
  return { control, relay, reports, hello: await relay.nextLine() };
}

const ok = (extra: Partial<Registered> = {}): string => formatMessage({ kind: 'OK', host: '127.0.0.1', port: 9000, dataPort: 7001, heartbeatMs: 1000, resume: RESUME, ...extra }).trimEnd();

test('control connection: opens with HELLO, proves the secret on AUTH and answers PING', async (t) => {
  const { relay, hello } = await open(t, { secret: 's3cret' });
  // warm=64: the default prewarm, 'auto', announces the most it may park.
  assert.match(hello, /^HELLO 1 host=127\.0\.0\.1 warm=64 feat=/);
  const nonce = newNonce();
  relay.send(`AUTH ${nonce}`);
  assert.equal(await relay.nextLine(), `PROOF ${computeProof('s3cret', nonce)}`);
  relay.send('PING');
  assert.equal(await relay.nextLine(), 'PONG');
});

test('control connection: OK is reported, and CONNECT and PROBE tokens are passed on', async (t) => {
  const { relay, reports } = await open(t);
  relay.send(ok({ nodes: ['127.0.0.1:7000'] }));
  const connect = newToken();
  const probe = newToken();
  relay.send(`CONNECT ${connect} 192.0.2.1 40000`);
  relay.send(`PROBE ${probe}`);
  relay.send('PING');
  assert.equal(await relay.nextLine(), 'PONG', 'every line before the PING was handled');
  assert.deepEqual(
    reports.registered.map((msg) => [msg.port, msg.dataPort, msg.nodes]),
    [[9000, 7001, ['127.0.0.1:7000']]],
  );
  assert.deepEqual(reports.connects, [connect]);
  assert.deepEqual(reports.probes, [probe]);
});

test('control connection: a relay that wants a secret the program lacks is a refusal for good', async (t) => {
  const { relay, reports } = await open(t);
  relay.send(`AUTH ${newNonce()}`);
  assert.deepEqual(await reports.lost(), { reason: 'no secret', rejoin: false });
  assert.equal(reports.refusals.length, 1);
  assert.ok(reports.refusals[0] instanceof RegistrationRefusedError);
  assert.match(reports.refusals[0].message, /^authentication failed: the relay requires a secret/);
});

test('control connection: ERR auth is a refusal for good; the lost reason carries the relay words', async (t) => {
  const { relay, reports } = await open(t);
  relay.send('ERR auth authentication failed: wrong secret');
  assert.deepEqual(await reports.lost(), { reason: 'relay refused: auth authentication failed: wrong secret', rejoin: false });
  assert.deepEqual(
    reports.refusals.map((err) => err.message),
    ['authentication failed: wrong secret'],
  );
});

test('control connection: ERR limit ends the connection but is no refusal for good', async (t) => {
  const { relay, reports } = await open(t);
  relay.send('ERR limit too many services');
  assert.deepEqual(await reports.lost(), { reason: 'relay refused: limit too many services', rejoin: false });
  assert.deepEqual(reports.refusals, []);
});

test('control connection: REJOIN asks for a new registration at once, SHUTDOWN for one later', async (t) => {
  const rejoining = await open(t);
  rejoining.relay.send('REJOIN');
  assert.deepEqual(await rejoining.reports.lost(), { reason: 'relay asked to register again', rejoin: true });
  const shutting = await open(t);
  shutting.relay.send('SHUTDOWN');
  assert.deepEqual(await shutting.reports.lost(), { reason: 'relay shut down', rejoin: false });
});

test('control connection: a line it cannot read ends the connection, lost once', async (t) => {
  const { relay, reports } = await open(t);
  relay.send('NONSENSE at all');
  const { reason } = await reports.lost();
  assert.match(reason, /^relay sent a bad line: /);
  await relay.endsWithin(5000);
  assert.equal(reports.lostCount, 1);
});

test('control connection: a relay that never answers HELLO is given up after handshakeTimeoutMs', async (t) => {
  const clock = new ManualClock();
  const { relay, reports } = await open(t, { clock, handshakeTimeoutMs: 2000 });
  relay.send('PING');
  assert.equal(await relay.nextLine(), 'PONG');
  assert.equal(clock.pendingTimers, 1, 'the handshake timer runs until OK');
  clock.advance(2000);
  assert.deepEqual(await reports.lost(), { reason: 'registration timed out', rejoin: false });
});

test('control connection: once registered, no handshake timeout; a relay silent for three heartbeats is dropped', async (t) => {
  const clock = new ManualClock();
  const { relay, reports } = await open(t, { clock, handshakeTimeoutMs: 2000 });
  relay.send(ok({ heartbeatMs: 1000 }));
  relay.send('PING');
  assert.equal(await relay.nextLine(), 'PONG');
  assert.equal(clock.pendingTimers, 1, 'only the heartbeat is left');
  clock.advance(3000);
  relay.send('PING');
  assert.equal(await relay.nextLine(), 'PONG', 'three silent heartbeats are still within the limit');
  clock.advance(3000);
  relay.send('PING');
  assert.equal(await relay.nextLine(), 'PONG', 'the PING before started the silence over');
  clock.advance(4000);
  assert.deepEqual(await reports.lost(), { reason: 'connection closed', rejoin: false });
  assert.equal(clock.pendingTimers, 0);
});

test('close(leave): a registered relay that understands leave is told LEAVE, then FIN', async (t) => {
  const { control, relay, reports } = await open(t);
  relay.send(ok({ features: ['leave'] }));
  relay.send('PING');
  assert.equal(await relay.nextLine(), 'PONG');
  control.close(true);
  assert.equal(await relay.nextLine(), 'LEAVE');
  assert.equal(await relay.endsWithin(5000), 'end');
  relay.socket.end();
  await reports.lost();
});

test('close(leave): without the feature the connection is just closed', async (t) => {
  const { control, relay } = await open(t);
  relay.send(ok());
  relay.send('PING');
  assert.equal(await relay.nextLine(), 'PONG');
  control.close(true);
  await relay.endsWithin(5000);
  assert.deepEqual(relay.lines.slice(2), [], 'nothing after PONG');
});
