import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { renderMetrics } from '../../src/monitor/metrics.js';
import type { Relay, RelayOptions } from '../../src/index.js';
import { eventually, within } from '../helpers/net.js';
import { askPool, RawMember, type MemberOptions } from '../helpers/pool-member.js';
import { randomHex } from '../helpers/protocol.js';
import { inProcessRelay } from '../helpers/relay.js';

/** A relay and `n` raw members of one new pool key on it. */
async function pool(t: TestContext, n: number, options: Partial<RelayOptions> = {}, member: MemberOptions = {}): Promise<{ relay: Relay; key: string; members: RawMember[] }> {
  const relay = await inProcessRelay(t, options);
  const key = randomHex(32);
  const members: RawMember[] = [];
  for (let i = 0; i < n; i++) members.push(await RawMember.join(t, relay.controlPort, key, `m${i}`, member));
  return { relay, key, members };
}

/** Clients one after another; the names of the members that served them. */
async function ask(t: TestContext, port: number, count: number): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const { name, echoed } = await askPool(t, port, `client ${i}\n`);
    assert.equal(echoed, `client ${i}\n`, 'the bytes the client sent before its answer arrive intact');
    names.push(name);
  }
  return names;
}

const tally = (names: string[]): Record<string, number> => Object.fromEntries([...new Set(names)].sort().map((name) => [name, names.filter((n) => n === name).length]));

test('pool: every member gets the same address, OK carries the pool key and lists pool, none supersedes another', async (t) => {
  const { key, members } = await pool(t, 3);
  const ports = new Set(members.map((member) => member.publicPort));
  assert.equal(ports.size, 1, 'one public address');
  for (const member of members) {
    assert.equal(member.registration!.resume, key);
    assert.match(member.lines[0]!, / feat=leave,probe,pool$/);
    assert.equal(member.control.destroyed, false, 'still registered');
  }
});

test('pool: clients are spread evenly over idle members (least loaded, ties go round)', async (t) => {
  const { members } = await pool(t, 3);
  const names = await ask(t, members[0]!.publicPort, 60);
  assert.deepEqual(tally(names), { m0: 20, m1: 20, m2: 20 });
});

test('pool: a client goes to the member with the fewest open tunnels', async (t) => {
  const { members } = await pool(t, 2);
  const port = members[0]!.publicPort;
  // Three tunnels kept open: they go m0, m1, then whichever; the next must go to the less loaded.
  const open = [];
  for (let i = 0; i < 3; i++) {
    const client = connect({ port, host: '127.0.0.1' });
    t.after(() => client.destroy());
    client.on('error', () => undefined);
    open.push(client);
    await eventually(() => members[0]!.served + members[1]!.served === i + 1, 5000, `tunnel ${i} open`);
  }
  const lighter = members[0]!.served < members[1]!.served ? 'm0' : 'm1';
  assert.deepEqual(await ask(t, port, 1), [lighter]);
});

test('pool: a member that DECLINEs has its client offered to another, bytes intact; retries are counted', async (t) => {
  const { relay, members } = await pool(t, 2);
  members[0]!.mode = 'decline';
  const names = await ask(t, members[0]!.publicPort, 6);
  assert.deepEqual(tally(names), { m1: 6 });
  assert.ok(members[0]!.connects >= 3, 'the declining member was offered clients');
  assert.equal(relay.stats.poolRetries, members[0]!.connects);
  assert.match(renderMetrics(relay.stats), new RegExp(`^relay_pool_retries_total ${members[0]!.connects}$`, 'm'));
});

test("pool: a DECLINE of a token that is not the member's is ignored, and the client is served", async (t) => {
  const { members } = await pool(t, 2);
  members[0]!.mode = 'ignore';
  members[1]!.mode = 'ignore';
  const answer = askPool(t, members[0]!.publicPort, 'x\n');
  await eventually(() => members[0]!.unanswered.length + members[1]!.unanswered.length === 1, 5000, 'the CONNECT');
  const [holder, other] = members[0]!.unanswered.length === 1 ? [members[0]!, members[1]!] : [members[1]!, members[0]!];
  other.send(`DECLINE ${holder.unanswered[0]}`);
  other.send(`DECLINE ${randomHex(32)}`);
  other.send('PING');
  await eventually(() => other.lines.includes('PONG'), 5000, 'the relay to read the DECLINEs');
  assert.equal(other.control.destroyed, false);
  holder.mode = 'serve';
  holder.send(`DECLINE ${holder.unanswered[0]}`);
  other.mode = 'serve';
  assert.deepEqual(await answer, { name: other.name, echoed: 'x\n' });
});

test('pool: a member whose control connection dies while its client waits: the client goes to another, bytes intact', async (t) => {
  const { members } = await pool(t, 2);
  for (const member of members) member.mode = 'ignore';
  const answer = askPool(t, members[0]!.publicPort, 'before the answer\n');
  await eventually(() => members[0]!.connects + members[1]!.connects === 1, 5000, 'the CONNECT');
  const [dying, living] = members[0]!.connects === 1 ? [members[0]!, members[1]!] : [members[1]!, members[0]!];
  living.mode = 'serve';
  dying.control.destroy();
  assert.deepEqual(await answer, { name: living.name, echoed: 'before the answer\n' });
});

test('pool: a member that does not dial back in time: the client goes to another, bytes intact', async (t) => {
  const { relay, members } = await pool(t, 2, { dialbackTimeoutMs: 300 });
  members[0]!.mode = 'ignore';
  const names = await ask(t, members[0]!.publicPort, 4);
  assert.deepEqual(tally(names), { m1: 4 });
  assert.ok(members[0]!.connects >= 1);
  assert.equal(relay.stats.poolRetries, members[0]!.connects);
});

test('pool: a member killed under a steady stream of clients: only clients spliced to it fail', async (t) => {
  const { members } = await pool(t, 3);
  const port = members[0]!.publicPort;
  const failed: number[] = [];
  let done = 0;
  const one = async (i: number): Promise<void> => {
    const client = connect({ port, host: '127.0.0.1' });
    t.after(() => client.destroy());
    client.on('error', () => undefined);
    client.setEncoding('latin1');
    let got = '';
    const ok = await new Promise<boolean>((resolve) => {
      client.on('connect', () => client.write(`c${i}\n`));
      client.on('data', (text: string) => {
        got += text;
        if (/^m\d\nc\d+\n$/.test(got)) resolve(true);
      });
      client.on('close', () => resolve(false));
      setTimeout(() => resolve(false), 5000).unref();
    });
    if (!ok) failed.push(client.localPort ?? -1);
    client.destroy();
    done++;
  };
  // Five clients at a time; the first member dies a third of the way through.
  const lanes = Array.from({ length: 5 }, async (_, lane) => {
    for (let i = lane; i < 150; i += 5) {
      if (i === 50) members[0]!.kill();
      await one(i);
    }
  });
  await within(Promise.all(lanes), 60_000, 'the stream of clients');
  assert.equal(done, 150);
  const strays = failed.filter((clientPort) => !members[0]!.clientPorts.has(clientPort));
  assert.deepEqual(strays, [], `clients that failed without being spliced to the killed member (failed: ${failed.length})`);
  assert.ok(members[1]!.served + members[2]!.served >= 100, 'the others served the rest');
});

test('pool: DRAIN takes a member out of dispatch, its open tunnel goes on', async (t) => {
  const { members } = await pool(t, 2);
  const port = members[0]!.publicPort;
  const client = connect({ port, host: '127.0.0.1' });
  t.after(() => client.destroy());
  client.on('error', () => undefined);
  client.setEncoding('latin1');
  let got = '';
  client.on('data', (text: string) => (got += text));
  await eventually(() => got.endsWith('\n'), 5000, 'the open tunnel to answer');
  const draining = members.find((member) => member.name === got.trim())!;
  draining.send('DRAIN');
  const names = await ask(t, port, 6);
  assert.ok(
    names.every((name) => name !== draining.name),
    `no new client for the draining member: ${names.join(' ')}`,
  );
  client.write('still here\n');
  await eventually(() => got.endsWith('still here\n'), 5000, "the draining member's tunnel to echo");
});

test('pool: HEALTH down takes a member out of dispatch until HEALTH up', async (t) => {
  const { members } = await pool(t, 2);
  const port = members[0]!.publicPort;
  members[0]!.send('HEALTH down');
  assert.deepEqual(tally(await ask(t, port, 6)), { m1: 6 });
  members[0]!.send('HEALTH up');
  assert.deepEqual(tally(await ask(t, port, 6)), { m0: 3, m1: 3 });
});

test("pool: a member failing the relay's probe gets no clients until a probe passes again", async (t) => {
  const { relay, members } = await pool(t, 2, { probeIntervalMs: 100, dialbackTimeoutMs: 200 });
  members[0]!.answerProbes = false;
  const api = (): { state: string }[] => relay.overview.services()[0]!.members!;
  await eventually(() => api()[0]!.state === 'unhealthy', 5000, 'the first member to be unhealthy');
  assert.deepEqual(tally(await ask(t, members[0]!.publicPort, 6)), { m1: 6 });
  members[0]!.answerProbes = true;
  await eventually(() => api()[0]!.state === 'ready', 5000, 'the first member to be ready again');
  assert.ok((await ask(t, members[0]!.publicPort, 6)).includes('m0'));
});

test('pool: with every member gone the door holds clients, and the first member back serves them', async (t) => {
  const { relay, key, members } = await pool(t, 2);
  const port = members[0]!.publicPort;
  for (const member of members) member.end();
  await eventually(() => relay.services.size === 0, 5000, 'both members gone');
  assert.match(renderMetrics(relay.stats), new RegExp(`^relay_pool_members\\{port="${port}",state="ready"\\} 0$`, 'm'), 'a pool away is still measured');
  const answer = askPool(t, port, 'waited\n');
  await eventually(() => relay.stats.clientsHeld === 1, 5000, 'the client to be held');
  const back = await RawMember.join(t, relay.controlPort, key, 'back');
  assert.equal(back.publicPort, port, "the address is the pool key's");
  assert.deepEqual(await answer, { name: 'back', echoed: 'waited\n' });
});

test('pool: LEAVE from one member removes it only; from the last, frees the port', async (t) => {
  const { relay, members } = await pool(t, 2);
  const port = members[0]!.publicPort;
  members[0]!.send('LEAVE');
  await eventually(() => members[0]!.control.destroyed || members[0]!.control.readableEnded, 5000, 'the relay to close the leaving member');
  assert.deepEqual(tally(await ask(t, port, 3)), { m1: 3 });
  members[1]!.send('LEAVE');
  await eventually(() => relay.services.size === 0, 5000, 'the last member gone');
  await eventually(() => relay.overview.services().length === 0, 5000, 'no reservation kept');
});

test('pool: another key gets another address; a resume key of the same digits is not the pool', async (t) => {
  const { relay, key, members } = await pool(t, 1);
  const stranger = await RawMember.join(t, relay.controlPort, randomHex(32), 'stranger');
  assert.notEqual(stranger.publicPort, members[0]!.publicPort);
  const single = await RawMember.join(t, relay.controlPort, key, 'single', { hello: `HELLO 1 host=127.0.0.1 resume=${key} feat=superseded` });
  assert.notEqual(single.publicPort, members[0]!.publicPort);
  assert.deepEqual(await ask(t, members[0]!.publicPort, 2), ['m0', 'm0']);
});

test('pool: pool= without feat=pool, or with resume=, is refused with a bad line', async (t) => {
  const relay = await inProcessRelay(t);
  const key = randomHex(32);
  const cases: [string, string][] = [
    [`HELLO 1 pool=${key}`, 'ERR bad-line pool= needs feat=pool'],
    [`HELLO 1 pool=${key} resume=${randomHex(32)} feat=pool`, 'ERR bad-line pool= and resume= cannot be combined'],
  ];
  for (const [hello, refusal] of cases) {
    const member = await RawMember.open(t, relay.controlPort, key, 'bad', { hello });
    assert.equal(await member.firstLine(), refusal);
  }
});

test('pool: /api/services shows a pool as one address with its members, and the metrics count them by state', async (t) => {
  const { relay, members } = await pool(t, 3);
  members[1]!.send('DRAIN');
  members[2]!.send('HEALTH down');
  await eventually(() => relay.overview.services()[0]?.members?.filter((m) => m.state !== 'ready').length === 2, 5000, 'the states');
  const [view] = relay.overview.services();
  assert.equal(relay.overview.services().length, 1);
  assert.deepEqual(
    view!.members!.map((m) => [m.state, m.tunnelsOpen, m.waiting, m.probe.state]),
    [
      ['ready', 0, 0, 'pending'],
      ['draining', 0, 0, 'pending'],
      ['unhealthy', 0, 0, 'pending'],
    ],
  );
  assert.match(view!.members![0]!.peer, /^127\.0\.0\.1:\d+$/);
  const metrics = renderMetrics(relay.stats);
  const port = members[0]!.publicPort;
  for (const [state, n] of [
    ['ready', 1],
    ['unhealthy', 1],
    ['draining', 1],
  ] as const)
    assert.match(metrics, new RegExp(`^relay_pool_members\\{port="${port}",state="${state}"\\} ${n}$`, 'm'));
});

test('pool: with tenants, the same key from two tenants is two pools, and a pool counts once against maxServices', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-pool-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tenantsFile = path.join(dir, 'tenants.json');
  const tenants = ['alice', 'bob'].map((name) => ({ name, secrets: [`${name}-secret`], maxServices: 1 }));
  writeFileSync(tenantsFile, JSON.stringify({ tenants }), { mode: 0o600 });
  const relay = await inProcessRelay(t, { tenantsFile });
  const key = randomHex(32);
  const as = (tenant: string): MemberOptions => ({ tenant, secret: `${tenant}-secret` });
  const alice = [await RawMember.join(t, relay.controlPort, key, 'a0', as('alice')), await RawMember.join(t, relay.controlPort, key, 'a1', as('alice'))];
  const bob = await RawMember.join(t, relay.controlPort, key, 'b0', as('bob'));
  assert.equal(alice[0]!.publicPort, alice[1]!.publicPort, "alice's two members: one pool, within her maxServices of 1");
  assert.notEqual(bob.publicPort, alice[0]!.publicPort, "bob's pool of the same key is his own");
  assert.deepEqual(tally(await ask(t, bob.publicPort, 3)), { b0: 3 });
  const other = await RawMember.open(t, relay.controlPort, randomHex(32), 'a-other', as('alice'));
  assert.match(await other.firstLine(), /^ERR limit tenant alice has its maximum of 1 services/);
});

test('pool: a held client counts its hold timeout from its arrival, not from its last offer', async (t) => {
  const { relay, members } = await pool(t, 1, { holdTimeoutMs: 600, dialbackTimeoutMs: 200 });
  members[0]!.mode = 'decline';
  const started = Date.now();
  const client = connect({ port: members[0]!.publicPort, host: '127.0.0.1' });
  t.after(() => client.destroy());
  client.on('error', () => undefined);
  await within(new Promise((resolve) => client.once('close', resolve)), 5000, 'the held client to be reset');
  assert.ok(Date.now() - started < 2000, 'reset within about the hold timeout, however often it was offered again');
  assert.ok((relay.stats.refusals.get('hold-timeout') ?? 0) >= 1);
});

test('pool: DRAIN, HEALTH or DECLINE from a service of its own (no pool=) is not valid there, as any unknown line', async (t) => {
  const relay = await inProcessRelay(t);
  for (const line of ['DRAIN', 'HEALTH down', `DECLINE ${randomHex(32)}`]) {
    const single = await RawMember.join(t, relay.controlPort, randomHex(32), 'single', { hello: 'HELLO 1 host=127.0.0.1 feat=pool' });
    single.send(line);
    await eventually(() => single.lines.length === 2, 5000, `the answer to ${line}`);
    assert.equal(single.lines[1], `ERR bad-line ${line.split(' ')[0]} is not valid here`);
  }
});
