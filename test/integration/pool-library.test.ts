import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { within } from '../helpers/net.js';
import { ALL_FEATURES, PRE_POOL_FEATURES, ScriptedRelay } from '../helpers/scripted-relay.js';
import { listenViaRelay, RegistrationRefusedError, type RelayClientOptions } from '../../src/index.js';

// The service side of pools (docs/protocol.md §17) against a relay played line by line.

const KEY = '0123456789abcdef0123456789abcdef';
const TOKEN = 'fedcba9876543210fedcba9876543210';
const TOKEN2 = 'aaaabbbbccccddddeeeeffff00001111';

function member(t: Parameters<typeof ScriptedRelay.start>[0], relay: ScriptedRelay, target: (socket: Socket) => void, extra: Partial<RelayClientOptions> = {}) {
  const tunnel = listenViaRelay(target, { host: '127.0.0.1', port: relay.controlPort, poolKey: KEY, ...extra });
  t.after(() => tunnel.close());
  return tunnel;
}

/** A socket the library delivered, resolved with the first one. */
function delivered(): { target: (socket: Socket) => void; first: Promise<Socket> } {
  let resolve!: (socket: Socket) => void;
  const first = new Promise<Socket>((r) => (resolve = r));
  return {
    target: (socket) => {
      socket.on('error', () => {});
      resolve(socket);
    },
    first,
  };
}

test('pool: HELLO carries pool=KEY and lists pool, without resume=; the OK that lists pool gives the address', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const tunnel = member(t, relay, () => {});
  const { peer, hello } = await relay.nextControl();
  assert.match(hello, new RegExp(`^HELLO 1 host=127\\.0\\.0\\.1 pool=${KEY} (warm=\\d+ )?feat=\\S*\\bpool\\b`));
  assert.doesNotMatch(hello, /resume=/);
  peer.send(relay.ok(KEY, ALL_FEATURES, 40123));
  assert.equal((await within(tunnel.established(), 5000, 'established')).address, '127.0.0.1:40123');
});

test('pool: a relay whose OK does not list pool (too old) stops the registration with a clear error, serves nothing, and is not retried', async (t) => {
  const relay = await ScriptedRelay.start(t);
  let served = 0;
  const tunnel = member(t, relay, () => served++);
  const errors: Error[] = [];
  tunnel.on('error', (err: Error) => errors.push(err));
  const { peer } = await relay.nextControl();
  // A CONNECT in the same segment as the OK must not be answered either.
  peer.send(`${relay.ok(KEY, PRE_POOL_FEATURES)}\nCONNECT ${TOKEN} 192.0.2.1 5000`);
  await assert.rejects(
    within(tunnel.established(), 5000, 'established() to settle'),
    (err: Error) => err instanceof RegistrationRefusedError && err.code === 'pool' && /too old for pools/.test(err.message),
  );
  assert.equal(await peer.endsWithin(5000), 'end');
  assert.equal(errors.length, 1);
  assert.equal(tunnel.publicAddress, undefined, 'the private address is never reported');
  assert.equal(relay.datas.all.length, 0, 'no dial-back');
  assert.equal(served, 0);
  assert.equal(relay.controls.all.length, 1, 'no second attempt');
});

test('pool: an OK without feat= at all (a relay older than features) is refused the same way', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const tunnel = member(t, relay, () => {});
  tunnel.on('error', () => {});
  const { peer } = await relay.nextControl();
  peer.send(relay.ok(KEY, undefined));
  await assert.rejects(within(tunnel.established(), 5000, 'established() to settle'), (err: Error) => (err as RegistrationRefusedError).code === 'pool');
});

test('pool: setHealth sends HEALTH down and up on each change only, a CONNECT while down is declined without a dial-back, and a new registration is told the health', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const tunnel = member(t, relay, () => assert.fail('no client may be served while down'));
  const first = await relay.nextControl();
  first.peer.send(relay.ok(KEY, ALL_FEATURES));
  await within(tunnel.established(), 5000, 'established');
  tunnel.setHealth('down');
  tunnel.setHealth('down');
  assert.equal(await first.peer.nextLine(), 'HEALTH down');
  first.peer.send(`CONNECT ${TOKEN} 192.0.2.1 5000`);
  assert.equal(await first.peer.nextLine(), `DECLINE ${TOKEN}`);
  // A reconnect starts as up on the relay's side: it hears down again, before anything else.
  first.peer.socket.destroy();
  const second = await relay.nextControl();
  second.peer.send(relay.ok(KEY, ALL_FEATURES));
  assert.equal(await second.peer.nextLine(), 'HEALTH down');
  tunnel.setHealth('up');
  assert.equal(await second.peer.nextLine(), 'HEALTH up');
  assert.equal(relay.datas.all.length, 0);
});

test('pool: admit declines a client before any DATA is sent; an admitted one is served through the Admission', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const served: Socket[] = [];
  let cancelled = 0;
  let answer: 'decline' | 'admit' = 'decline';
  const asked: string[] = [];
  const tunnel = member(t, relay, () => assert.fail('an admitted client goes to its Admission, not the target'), {
    admit: async (client) => {
      asked.push(`${client.address}:${client.port}`);
      // Later than the data connection's connect, as a target's answer is.
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (answer === 'decline') return 'decline';
      return { serve: (socket) => served.push(socket), cancel: () => cancelled++ };
    },
  });
  const { peer } = await relay.nextControl();
  peer.send(relay.ok(KEY, ALL_FEATURES));
  await within(tunnel.established(), 5000, 'established');

  peer.send(`CONNECT ${TOKEN} 192.0.2.1 5000`);
  assert.equal(await peer.nextLine(), `DECLINE ${TOKEN}`);
  const unused = await relay.nextData();
  await unused.endsWithin(5000);
  assert.equal(unused.text(), '', 'the data connection opened meanwhile is closed without a token');

  answer = 'admit';
  peer.send(`CONNECT ${TOKEN2} 192.0.2.2 6000`);
  const data = await relay.nextData();
  assert.equal(await data.nextLine(), `DATA ${TOKEN2}`);
  data.send('CLIENT 192.0.2.2 6000 127.0.0.1 40000');
  data.socket.write('hello');
  await within(
    (async () => {
      while (served.length === 0) await new Promise((resolve) => setImmediate(resolve));
    })(),
    5000,
    'the admitted client served',
  );
  const socket = served[0]!;
  assert.equal(socket.remoteAddress, '192.0.2.2');
  assert.deepEqual(asked, ['192.0.2.1:5000', '192.0.2.2:6000']);
  assert.equal(cancelled, 0);
});

test('pool: drain() sends DRAIN and resolves only once a client the relay gave before reading it has been delivered', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const { target, first } = delivered();
  const tunnel = member(t, relay, target);
  const ctl = await relay.nextControl();
  ctl.peer.send(relay.ok(KEY, ALL_FEATURES));
  await within(tunnel.established(), 5000, 'established');
  // The relay picked this member a moment before the DRAIN reached it.
  ctl.peer.send(`CONNECT ${TOKEN} 192.0.2.1 5000`);
  let drained = false;
  const draining = tunnel.drain().then(() => (drained = true));
  const data = await relay.nextData();
  assert.equal(await data.nextLine(), `DATA ${TOKEN}`);
  assert.equal(await ctl.peer.nextLine(), 'DRAIN');
  assert.equal(drained, false, 'drain() waits for the dial-back under way');
  data.send('CLIENT 192.0.2.1 5000 127.0.0.1 40000');
  await within(draining, 5000, 'drain() to resolve');
  assert.equal((await within(first, 1000, 'the client delivered')).remoteAddress, '192.0.2.1');
  // A reconnect while draining is told at once.
  ctl.peer.socket.destroy();
  const again = await relay.nextControl();
  again.peer.send(relay.ok(KEY, ALL_FEATURES));
  assert.equal(await again.peer.nextLine(), 'DRAIN');
  // close() after a drain sends no LEAVE: the address stays the pool's.
  tunnel.close();
  assert.equal(await again.peer.endsWithin(5000), 'end');
  assert.deepEqual(again.peer.lines.slice(1), ['DRAIN']);
});

test('pool: a service that is no pool member never sends a pool message, even if the relay lists pool', async (t) => {
  const relay = await ScriptedRelay.start(t);
  const tunnel = listenViaRelay(() => {}, { host: '127.0.0.1', port: relay.controlPort });
  t.after(() => tunnel.close());
  const { peer, hello } = await relay.nextControl();
  assert.doesNotMatch(hello, /pool/);
  peer.send(relay.ok(KEY, ALL_FEATURES));
  await within(tunnel.established(), 5000, 'established');
  tunnel.setHealth('down');
  await tunnel.drain();
  peer.send(`CONNECT ${TOKEN} 192.0.2.1 5000`);
  const data = await relay.nextData();
  assert.equal(await data.nextLine(), `DATA ${TOKEN}`);
  assert.deepEqual(peer.lines.slice(1), []);
});

test('pool in a fleet: the member registers with every node in nodes= with the same pool key, and drain() reaches each node', async (t) => {
  const one = await ScriptedRelay.start(t);
  const two = await ScriptedRelay.start(t);
  const nodes = `nodes=127.0.0.1:${one.controlPort},127.0.0.1:${two.controlPort}`;
  const tunnel = member(t, one, () => {});
  const first = await one.nextControl();
  first.peer.send(`${one.ok(KEY, ALL_FEATURES)} ${nodes}`);
  const second = await two.nextControl();
  assert.match(second.hello, new RegExp(`\\bpool=${KEY}\\b`));
  assert.doesNotMatch(second.hello, /resume=/);
  second.peer.send(`${two.ok(KEY, ALL_FEATURES)} ${nodes}`);
  await within(tunnel.established(), 5000, 'established');
  await within(tunnel.drain(), 5000, 'drain() on both nodes');
  assert.equal(await first.peer.nextLine(), 'DRAIN');
  assert.equal(await second.peer.nextLine(), 'DRAIN');
  assert.equal(one.controls.all.length, 1, 'one registration per node');
  assert.equal(two.controls.all.length, 1);
});
