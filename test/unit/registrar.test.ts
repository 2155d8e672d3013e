import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { RelayOptions } from '../../src/config/defaults.js';
import { noLeaseStore } from '../../src/leases/lease-store.js';
import { computeProof, newToken } from '../../src/protocol/auth.js';
import { parseServiceLine } from '../../src/protocol/parse.js';
import { Registrar } from '../../src/relay/registrar.js';
import { dial, freeBlock, socketPair } from '../helpers/net.js';
import { nextConnect, parseOk, Peer } from '../helpers/protocol.js';
import { refusedWithin } from '../helpers/observe.js';
import { testContext } from '../helpers/relay-context.js';

/** The data port the registrar's OK lines name (the relay would set it once listening). */
const TEST_DATA_PORT = 7999;

/**
 * A Registrar on a manual clock, with no lease store and public ports from a free block
 * on 127.0.0.1. Heartbeats are rare (60 s) so moving the clock through a grace does not
 * end live sessions; probes are off. Every door is closed by the test's cleanup.
 */
async function startRegistrar(t: TestContext, options: Partial<RelayOptions> = {}) {
  const ports = await freeBlock(10);
  const rig = testContext({ ports, bind: '127.0.0.1', heartbeatMs: 60_000, resumeGraceMs: 10_000, probeIntervalMs: 0, ...options });
  rig.ctx.dataPort = TEST_DATA_PORT;
  const registrar = new Registrar(rig.ctx, noLeaseStore, undefined);
  t.after(() => registrar.closeAll(false));
  /**
   * A service on a new control connection whose first line, `hello`, the relay has
   * read: `registered` settles when the registrar is done with it.
   */
  const connect = async (hello: string): Promise<{ service: Peer; registered: Promise<void> }> => {
    const parsed = parseServiceLine(hello);
    assert.ok(parsed.ok && parsed.msg.kind === 'HELLO', `not a HELLO: ${hello}`);
    const { near, far } = await socketPair(t);
    const service = new Peer(far);
    return { service, registered: registrar.register(near, parsed.msg, Buffer.alloc(0)) };
  };
  /** A service that registers with `hello`, and the public port its OK names. */
  const register = async (hello: string): Promise<{ service: Peer; port: number }> => {
    const { service, registered } = await connect(hello);
    const { publicPort } = parseOk(await service.nextLine());
    await registered;
    return { service, port: publicPort };
  };
  return { ...rig, ports, registrar, connect, register };
}

test('HELLO is answered OK with a public port from the range and the data port, and that port takes clients', async (t) => {
  const { connect, ports, registrar } = await startRegistrar(t);
  const { service, registered } = await connect('HELLO 1 host=127.0.0.1');
  const ok = parseOk(await service.nextLine());
  await registered;
  assert.ok(ok.publicPort >= ports.first && ok.publicPort <= ports.last, `port ${ok.publicPort} in ${ports.first}-${ports.last}`);
  assert.equal(ok.dataPort, TEST_DATA_PORT);
  assert.equal(ok.heartbeatMs, 60_000);
  assert.equal(registrar.services.size, 1);
  const client = await dial(t, ok.publicPort);
  const announced = await nextConnect(service);
  assert.equal(announced.clientPort, client.localPort);
});

test('HELLO with another protocol version is refused with ERR version', async (t) => {
  const { connect, refusals, registrar } = await startRegistrar(t);
  const { service, registered } = await connect('HELLO 2');
  assert.equal(await service.nextLine(), 'ERR version relay speaks protocol 1, service sent HELLO 2');
  await registered;
  assert.equal(await service.endsWithin(2000), 'end');
  assert.deepEqual(refusals(), ['version']);
  assert.equal(registrar.services.size, 0);
});

test('with a secret, the relay asks AUTH and a right PROOF registers the service', async (t) => {
  const { connect, refusals } = await startRegistrar(t, { secret: 'open sesame' });
  const { service, registered } = await connect('HELLO 1');
  const nonce = /^AUTH ([0-9a-f]{64})$/.exec(await service.nextLine())?.[1];
  assert.ok(nonce !== undefined, 'an AUTH line with a nonce');
  service.send(`PROOF ${computeProof('open sesame', nonce)}`);
  assert.match(await service.nextLine(), /^OK /);
  await registered;
  assert.deepEqual(refusals(), []);
});

test('with a secret, a wrong PROOF is refused with ERR auth', async (t) => {
  const { connect, refusals, registrar } = await startRegistrar(t, { secret: 'open sesame' });
  const { service, registered } = await connect('HELLO 1');
  const nonce = /^AUTH ([0-9a-f]{64})$/.exec(await service.nextLine())?.[1];
  assert.ok(nonce !== undefined, 'an AUTH line with a nonce');
  service.send(`PROOF ${computeProof('open sesame?', nonce)}`);
  assert.equal(await service.nextLine(), 'ERR auth authentication failed: wrong or missing secret');
  await registered;
  assert.deepEqual(refusals(), ['auth']);
  assert.equal(registrar.services.size, 0);
});

test('--max-services: the service over the limit is refused with ERR limit', async (t) => {
  const { connect, register, refusals, registrar } = await startRegistrar(t, { maxServices: 1 });
  await register('HELLO 1');
  const second = await connect('HELLO 1');
  assert.equal(await second.service.nextLine(), 'ERR limit relay has its maximum of 1 services');
  await second.registered;
  assert.deepEqual(refusals(), ['limit']);
  assert.equal(registrar.services.size, 1);
});

/** The service closes its control connection; resolves once the relay has ended the session (it closes its end then). */
async function goAway(service: Peer): Promise<void> {
  service.socket.end();
  await service.endsWithin(2000);
}

test('a second HELLO with the same resume key supersedes the first (ERR superseded) and keeps the port, even at --max-services', async (t) => {
  const { register, registrar, refusals } = await startRegistrar(t, { maxServices: 1 });
  const resume = newToken();
  const first = await register(`HELLO 1 resume=${resume} feat=superseded`);
  const second = await register(`HELLO 1 resume=${resume} feat=superseded`);
  assert.equal(second.port, first.port);
  assert.equal(await first.service.nextLine(), 'ERR superseded another control connection registered with this resume key');
  assert.equal(await first.service.endsWithin(2000), 'end');
  assert.equal(registrar.services.size, 1);
  assert.deepEqual(refusals(), []);
});

test('a superseded service that did not list feat=superseded is closed without an ERR', async (t) => {
  const { register } = await startRegistrar(t);
  const resume = newToken();
  const first = await register(`HELLO 1 resume=${resume}`);
  await register(`HELLO 1 resume=${resume}`);
  await first.service.endsWithin(2000);
  assert.equal(first.service.lines.length, 1, `only its OK: ${JSON.stringify(first.service.lines)}`);
});

test('a service that went away keeps its port for its key for --resume-grace; then a new key can have it', async (t) => {
  const { register, clock } = await startRegistrar(t, { resumeGraceMs: 10_000 });
  const resume = newToken();
  const first = await register(`HELLO 1 resume=${resume}`);
  await goAway(first.service);
  const stranger = await register(`HELLO 1 port=${first.port}`);
  assert.notEqual(stranger.port, first.port, 'reserved for its key, even when asked for');
  const back = await register(`HELLO 1 resume=${resume}`);
  assert.equal(back.port, first.port, 'the key gets its port back');
  await goAway(back.service);
  clock.advance(9_999);
  assert.notEqual((await register(`HELLO 1 port=${first.port}`)).port, first.port, 'still within the grace');
  clock.advance(1);
  assert.equal((await register(`HELLO 1 port=${first.port}`)).port, first.port, 'the grace is over');
});

test('with --resume-grace 0 a service that went away keeps nothing: its door closes and its port is free', async (t) => {
  const { register, registrar } = await startRegistrar(t, { resumeGraceMs: 0 });
  const first = await register(`HELLO 1 resume=${newToken()}`);
  await goAway(first.service);
  await refusedWithin(first.port, 2000);
  assert.equal([...registrar.listed()].length, 0, 'not listed as away');
  assert.equal((await register(`HELLO 1 port=${first.port}`)).port, first.port, 'another key may have it at once');
});

test('a service that sends LEAVE frees its port at once', async (t) => {
  const { register, registrar } = await startRegistrar(t, { resumeGraceMs: 10_000 });
  const leaving = await register(`HELLO 1 resume=${newToken()} feat=leave`);
  leaving.service.send('LEAVE');
  await leaving.service.endsWithin(2000);
  assert.equal(registrar.services.size, 0);
  const next = await register(`HELLO 1 port=${leaving.port}`);
  assert.equal(next.port, leaving.port);
});

test('closeAll for a handover sends REJOIN to services that listed feat=rejoin and SHUTDOWN to the others', async (t) => {
  const { register, registrar, ctx } = await startRegistrar(t);
  const rejoining = await register('HELLO 1 feat=rejoin');
  const older = await register('HELLO 1');
  ctx.shuttingDown = true;
  assert.deepEqual(registrar.closeAll(true), [], 'no client was held at a door');
  assert.equal(await rejoining.service.nextLine(), 'REJOIN');
  assert.equal(await older.service.nextLine(), 'SHUTDOWN');
  assert.equal(registrar.services.size, 0);
});

test('closeAll for a stop sends SHUTDOWN to every service, feat=rejoin or not', async (t) => {
  const { register, registrar, ctx } = await startRegistrar(t);
  const rejoining = await register('HELLO 1 feat=rejoin');
  ctx.shuttingDown = true;
  registrar.closeAll(false);
  assert.equal(await rejoining.service.nextLine(), 'SHUTDOWN');
});
