import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { computeProof } from '../../src/protocol/auth.js';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assertEchoes } from '../helpers/echo.js';
import { deadline, freeBlock, howItEnds, readAtLeast, within } from '../helpers/net.js';
import { NO_ENV_SECRET, ROOT, start, startRelay, startService } from '../helpers/processes.js';
import { dialData, Peer } from '../helpers/protocol.js';

const CLEAN_ENV = { ...NO_ENV_SECRET, RELAY_TENANT: '', RELAY_TENANTS: '' };

/** A client from source address `from` (any of 127.0.0.0/8 on Linux). */
async function clientFrom(t: TestContext, port: number, from: string): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', localAddress: from, allowHalfOpen: true });
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  await once(socket, 'connect', { signal: deadline(5000) });
  return socket;
}

async function echoes(t: TestContext, port: number, from: string): Promise<Socket> {
  const socket = await clientFrom(t, port, from);
  await assertEchoes(socket, `from ${from}`);
  return socket;
}

async function isReset(t: TestContext, port: number, from: string): Promise<boolean> {
  const socket = connect({ port, host: '127.0.0.1', localAddress: from, allowHalfOpen: true });
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  return (await howItEnds(socket)) === 'reset';
}

test('who may connect: relay, tenant and service lists each narrow the one above; a reload that denies an address resets its open tunnel', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-acl-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'tenants.json');
  const write = (tenant: object): void => writeFileSync(file, JSON.stringify({ tenants: [{ name: 'alice', secrets: ['a'], ...tenant }] }), { mode: 0o600 });
  write({ allow: ['127.0.0.0/29'] });
  const block = await freeBlock(20);
  const relay = await startRelay(t, ['--ports', `${block.first}-${block.last}`, '--tenants', file, '--deny', '127.0.0.4'], CLEAN_ENV);
  // The service allows 127.0.0.0/24, wider than its tenant: that opens nothing beyond 127.0.0.0/29.
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port), '--tenant', 'alice', '--secret', 'a', '--allow', '127.0.0.0/24', '--deny', '127.0.0.3'], CLEAN_ENV);
  const port = echo.publicPort;
  const five = await echoes(t, port, '127.0.0.5');
  const six = await echoes(t, port, '127.0.0.6');
  assert.ok(await isReset(t, port, '127.0.0.4'), 'denied by the relay');
  assert.ok(await isReset(t, port, '127.0.0.3'), 'denied by the service');
  assert.ok(await isReset(t, port, '127.0.0.9'), 'outside the tenant allow list, inside the service one');
  await relay.waitFor('stderr', /"reason":"ip-denied","client":"127\.0\.0\.9"/);

  const from = relay.stderr.length;
  write({ allow: ['127.0.0.0/29'], deny: ['127.0.0.5'] });
  relay.signal('SIGHUP');
  await relay.waitFor('stderr', /tenants file reloaded/, 5000, from);
  assert.equal(await howItEnds(five), 'reset', "127.0.0.5's open tunnel is reset by the reload");
  await relay.waitFor('stderr', /"tunnels":1,"waiting":0,"msg":"tunnels cut: their clients are no longer allowed/, 5000, from);
  await assertEchoes(six, 'still here');
  assert.ok(await isReset(t, port, '127.0.0.5'), 'a new client of the newly denied address');
  await echoes(t, port, '127.0.0.2');
});

test('who may connect: a bad range is a usage error naming the flag and the range (exit 2)', async (t) => {
  const relay = start(t, path.join(ROOT, 'relay'), ['7000', '--allow', '10.0.0.0/8,10.0.0.1/8'], CLEAN_ENV);
  const relayExit = await within(relay.exited, 10_000, 'the relay to exit');
  assert.equal(relayExit.code, 2);
  assert.match(relay.stderr.join('\n'), /--allow must be CIDR\[,CIDR\.\.\.\] .*"10\.0\.0\.1\/8" has bits set past its \/8/);
  const expose = start(t, path.join(ROOT, 'expose'), ['127.0.0.1', '7000', '3000', '--deny', '192.0.2.300'], CLEAN_ENV);
  const exposeExit = await within(expose.exited, 10_000, 'expose to exit');
  assert.equal(exposeExit.code, 2);
  assert.match(expose.stderr.join('\n'), /--deny must be CIDR.*"192\.0\.2\.300" is not an IPv4 or IPv6 address/);
});

test('who may connect: a reload that denies an address resets its clients still waiting for their dial-back', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-acl-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'tenants.json');
  const write = (tenant: object): void => writeFileSync(file, JSON.stringify({ tenants: [{ name: 'alice', secrets: ['a'], ...tenant }] }), { mode: 0o600 });
  write({});
  const block = await freeBlock(20);
  const relay = await startRelay(t, ['--ports', `${block.first}-${block.last}`, '--tenants', file, '--dialback-timeout', '30'], CLEAN_ENV);
  // A service that takes its clients' CONNECTs and never dials back: they wait.
  const control = await Peer.open(t, relay.port, { autoPong: true });
  control.send('HELLO 1 host=127.0.0.1 tenant=alice');
  const auth = /^AUTH ([0-9a-f]{64})$/.exec(await control.nextLine());
  assert.ok(auth);
  control.send(`PROOF ${computeProof('a', auth[1]!)}`);
  const [, port, dataPort] = (/^OK \S+:(\d+) data=(\d+)/.exec(await control.nextLine()) ?? []).map(Number);
  const denied = await clientFrom(t, port!, '127.0.0.5');
  const allowed = await clientFrom(t, port!, '127.0.0.6');
  const tokens = new Map<string, string>();
  for (let i = 0; i < 2; i++) {
    const [, token, address] = /^CONNECT (\S+) (\S+) /.exec(await control.nextLine()) ?? [];
    tokens.set(address!, token!);
  }

  const from = relay.stderr.length;
  write({ deny: ['127.0.0.5'] });
  relay.signal('SIGHUP');
  assert.equal(await howItEnds(denied), 'reset', 'the waiting client of the newly denied address is reset');
  await relay.waitFor('stderr', /"tunnels":0,"waiting":1,"msg":"tunnels cut: their clients are no longer allowed/, 5000, from);
  // The other still waits: its dial-back splices it.
  const { peer, reply } = await dialData(t, dataPort!, `DATA ${tokens.get('127.0.0.6')}`);
  assert.match(reply, /^CLIENT 127\.0\.0\.6 /);
  peer.socket.write('served');
  assert.equal((await readAtLeast(allowed, 6, 5000)).toString(), 'served');
  // And the denied one's token is gone.
  const late = await dialData(t, dataPort!, `DATA ${tokens.get('127.0.0.5')}`);
  assert.doesNotMatch(late.reply, /^CLIENT/);
});
