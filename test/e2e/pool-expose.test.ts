import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ServiceView } from '../../src/monitor/overview.js';
import { getJson, relayWithDashboard } from '../helpers/dashboard.js';
import { eventually, listenLocal } from '../helpers/net.js';
import { NO_ENV_SECRET, startService, type ServiceProcess } from '../helpers/processes.js';

// Pools end to end (issue 19): real ./relay, real ./expose members with one pool file,
// each in front of a server of its own that answers with its name.

interface Member {
  name: string;
  expose: ServiceProcess;
  stopTarget: () => void;
}

async function poolFile(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pool-e2e-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return path.join(dir, 'pool.key');
}

/** A server that answers every connection's first bytes with its name, then closes. */
async function namedTarget(t: TestContext, name: string): Promise<{ port: number; stop: () => void }> {
  const { server, port } = await listenLocal(t, (socket) => socket.once('data', () => socket.end(name)));
  return { port, stop: () => server.close() };
}

async function member(t: TestContext, relayPort: number, file: string, name: string, flags: string[] = []): Promise<Member> {
  const target = await namedTarget(t, name);
  const expose = await startService(t, 'expose', ['127.0.0.1', String(relayPort), `127.0.0.1:${target.port}`, '--pool-file', file, ...flags], NO_ENV_SECRET);
  return { name, expose, stopTarget: target.stop };
}

/** One client: sends a byte, reads to the end; the name that answered, or 'failed'. */
function ask(port: number, ms = 8000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), ms);
    socket.on('connect', () => socket.write('?'));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.on('close', (hadError) => {
      clearTimeout(timer);
      const answer = Buffer.concat(chunks).toString();
      resolve(hadError || answer === '' ? 'failed' : answer);
    });
  });
}

/** `count` clients, `inFlight` at a time; `during(done)` is called after each answer. */
async function clients(port: number, count: number, inFlight: number, during?: (done: number) => void): Promise<Map<string, number>> {
  const answers = new Map<string, number>();
  let started = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (started < count) {
      started++;
      const answer = await ask(port);
      answers.set(answer, (answers.get(answer) ?? 0) + 1);
      during?.(++done);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return answers;
}

async function poolOfThree(t: TestContext, flags: string[] = []): Promise<{ relay: Awaited<ReturnType<typeof relayWithDashboard>>; file: string; members: Member[] }> {
  const relay = await relayWithDashboard(t, [], NO_ENV_SECRET);
  const file = await poolFile(t);
  const members: Member[] = [];
  // The first makes the key file; the others read it.
  for (const name of ['alpha', 'beta', 'gamma']) members.push(await member(t, relay.port, file, name, flags));
  const ready = async (): Promise<boolean> => (await getJson<ServiceView[]>(relay.base, 'api/services'))[0]?.members?.filter((m) => m.state === 'ready').length === 3;
  await eventually(ready, 10_000, 'three ready members');
  return { relay, file, members };
}

test('pool of three ./expose: one address, 300 short clients spread within 20 % of even; a stranger key gets another address', async (t) => {
  const { relay, members } = await poolOfThree(t);
  const port = members[0]!.expose.publicPort;
  for (const m of members) assert.equal(m.expose.publicPort, port, `${m.name} serves the pool's address`);
  const answers = await clients(port, 300, 3);
  assert.equal(answers.get('failed'), undefined, `no client failed: ${[...answers]}`);
  for (const m of members) {
    const got = answers.get(m.name) ?? 0;
    assert.ok(got >= 80 && got <= 120, `${m.name} served ${got} of 300 (${[...answers]})`);
  }
  const stranger = await member(t, relay.port, await poolFile(t), 'stranger');
  assert.notEqual(stranger.expose.publicPort, port, 'another key, another address');
  assert.equal(await ask(stranger.expose.publicPort), 'stranger');
});

test('pool: kill -9 of a member under a steady loop fails at most the clients spliced to it; SIGTERM of another fails none', async (t) => {
  const { members } = await poolOfThree(t, ['--drain-timeout', '5']);
  const port = members[0]!.expose.publicPort;
  const inFlight = 4;
  const killed = await clients(port, 150, inFlight, (done) => {
    if (done === 40) members[0]!.expose.signal('SIGKILL');
  });
  const failedAtKill = killed.get('failed') ?? 0;
  assert.ok(failedAtKill <= inFlight, `at most the ${inFlight} clients in flight fail at a kill -9, got ${failedAtKill} (${[...killed]})`);
  assert.ok((killed.get('beta') ?? 0) + (killed.get('gamma') ?? 0) >= 150 - 40 - inFlight, `the others served the rest (${[...killed]})`);
  const stopped = members[1]!.expose.exited;
  const drained = await clients(port, 150, inFlight, (done) => {
    if (done === 40) members[1]!.expose.signal('SIGTERM');
  });
  assert.equal(drained.get('failed'), undefined, `SIGTERM under load fails no client (${[...drained]})`);
  assert.equal((await stopped).code, 0, 'the drained member exits cleanly');
});

test('pool: every member gone, a client is held at the door and served by the first member back', async (t) => {
  const { relay, file, members } = await poolOfThree(t);
  const port = members[0]!.expose.publicPort;
  for (const m of members) m.expose.signal('SIGKILL');
  await Promise.all(members.map((m) => m.expose.exited));
  await eventually(async () => ((await getJson<ServiceView[]>(relay.base, 'api/services'))[0]?.members ?? []).length === 0, 10_000, 'no member left');
  const held = ask(port, 15_000);
  const back = await member(t, relay.port, file, 'delta');
  assert.equal(back.expose.publicPort, port, 'the first member back has the address');
  assert.equal(await held, 'delta', 'the held client is served by it');
});

test('pool: a member whose target is down (./expose --check-interval) gets no clients, and none fails', async (t) => {
  const { relay, members } = await poolOfThree(t, ['--check-interval', '1']);
  const port = members[0]!.expose.publicPort;
  members[2]!.stopTarget();
  const unhealthy = async (): Promise<boolean> => (await getJson<ServiceView[]>(relay.base, 'api/services'))[0]?.members?.some((m) => m.state === 'unhealthy') === true;
  await eventually(unhealthy, 10_000, 'the member with no target is unhealthy');
  const answers = await clients(port, 60, 3);
  assert.equal(answers.get('failed'), undefined, `no client failed (${[...answers]})`);
  assert.equal(answers.get('gamma'), undefined, `the member whose target is down served none (${[...answers]})`);
});
