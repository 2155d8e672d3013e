import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { deadline, eventually, howItEnds, portsFlag, readAtLeast, within } from '../helpers/net.js';
import { ROOT, start, startRelay, startService, type RelayProcess } from '../helpers/processes.js';
import path from 'node:path';

/** A public client from a chosen loopback address (all of 127/8 is loopback on Linux). */
async function dialFrom(t: TestContext, port: number, from: string): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', localAddress: from, allowHalfOpen: true });
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  await once(socket, 'connect', { signal: deadline(5000) });
  return socket;
}

/** Whether the client is served (its line echoed) or reset by the relay. */
async function servedOrReset(socket: Socket, text = 'hello\n'): Promise<'served' | 'reset'> {
  socket.write(text);
  const echoed = readAtLeast(socket, text.length, 5000).then(
    (got) => (got.toString() === text ? ('served' as const) : ('reset' as const)),
    () => 'reset' as const,
  );
  return within(echoed, 6000, 'an echo or a reset');
}

/** A whole try from one address: connect and send a line; a reset may come before the connect completes. */
async function attempt(t: TestContext, port: number, from: string): Promise<'served' | 'reset'> {
  let socket: Socket;
  try {
    socket = await dialFrom(t, port, from);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') return 'reset';
    throw err;
  }
  return servedOrReset(socket);
}

async function relayWithEcho(t: TestContext, flags: string[], services = 1): Promise<{ relay: RelayProcess; ports: number[] }> {
  const relay = await startRelay(t, [...portsFlag(), ...flags]);
  const ports: number[] = [];
  for (let i = 0; i < services; i++) ports.push((await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)])).publicPort);
  return { relay, ports };
}

test('--max-clients-per-ip: the next client from one address is reset, over every public port, while another address is served', async (t) => {
  const { relay, ports } = await relayWithEcho(t, ['--max-clients-per-ip', '3'], 2);
  const [portA, portB] = ports as [number, number];
  const first = await dialFrom(t, portA, '127.0.0.1');
  const open = [first, await dialFrom(t, portA, '127.0.0.1'), await dialFrom(t, portB, '127.0.0.1')];
  for (const socket of open) assert.equal(await servedOrReset(socket), 'served');

  assert.equal(await attempt(t, portB, '127.0.0.1'), 'reset', 'the fourth client from 127.0.0.1 is reset');
  await relay.waitFor('stderr', /"reason":"clients-per-ip".*public client reset/);

  const other = await dialFrom(t, portB, '127.0.0.2');
  assert.equal(await servedOrReset(other), 'served', 'another address has its own count');

  // A client that leaves makes room; the relay hears of it asynchronously.
  first.end();
  await once(first, 'close', { signal: deadline(5000) });
  await eventually(async () => (await attempt(t, portA, '127.0.0.1')) === 'served', 5000, 'room for one more from 127.0.0.1');
  for (const socket of open.slice(1)) assert.equal(await servedOrReset(socket, 'still here\n'), 'served', 'clients already open are untouched');
});

test('--idle-timeout: a tunnel without a byte either way is reset and logged, a busy one is left alone', async (t) => {
  const { relay, ports } = await relayWithEcho(t, ['--idle-timeout', '1']);
  const port = ports[0]!;
  const quiet = await dialFrom(t, port, '127.0.0.1');
  const busy = await dialFrom(t, port, '127.0.0.1');
  assert.equal(await servedOrReset(quiet), 'served');
  assert.equal(await servedOrReset(busy), 'served');
  const started = Date.now();
  // One byte each way every 200 ms keeps the busy tunnel alive.
  const keepBusy = setInterval(() => busy.write('.'), 200);
  t.after(() => clearInterval(keepBusy));
  busy.resume();

  assert.equal(await howItEnds(quiet, 10_000), 'reset', 'the idle client sees a reset');
  assert.ok(Date.now() - started >= 900, 'not before the timeout');
  await relay.waitFor('stderr', /"closedBy":"relay","outcome":"idle-timeout".*"msg":"tunnel closed"/);

  clearInterval(keepBusy);
  assert.ok(Date.now() - started > 1000, 'the busy tunnel outlived the timeout');
  // Echoed dots may still be on their way: wait for the line among them.
  let echoed = '';
  busy.on('data', (chunk: Buffer) => (echoed += chunk.toString()));
  busy.write('still open\n');
  await eventually(() => echoed.includes('still open\n') || busy.destroyed, 5000, 'the busy tunnel to echo');
  assert.ok(!busy.destroyed, 'the busy tunnel is untouched');
});

test('--max-connect-rate: the excess from one address is reset at accept, another address is served', async (t) => {
  const { relay, ports } = await relayWithEcho(t, ['--max-connect-rate', '5']);
  const port = ports[0]!;
  // Twenty at once from one address: a burst of five passes (plus what refills meanwhile).
  const outcomes = await Promise.all(Array.from({ length: 20 }, () => attempt(t, port, '127.0.0.1')));
  const served = outcomes.filter((o) => o === 'served').length;
  assert.ok(served >= 5 && served <= 10, `5 to 10 of 20 served, got ${served}`);
  await relay.waitFor('stderr', /"reason":"connect-rate".*public client reset/);

  assert.equal(await attempt(t, port, '127.0.0.2'), 'served', 'another address has its own bucket');
});

test('a bad per-address limit is one line on stderr and exit code 2', async (t) => {
  for (const flags of [
    ['--max-clients-per-ip', '-3'],
    ['--max-connect-rate', 'fast'],
    ['--idle-timeout', '99999999'],
  ]) {
    const relay = start(t, path.join(ROOT, 'relay'), ['0', ...portsFlag(), ...flags]);
    const { code } = await within(relay.exited, 10_000, 'the relay to exit');
    assert.equal(code, 2, `${flags.join(' ')}: exit code`);
    assert.equal(relay.stderr.length, 1, `${flags.join(' ')}: one line, got ${relay.stderr.join('\n')}`);
    assert.match(relay.stderr[0]!, new RegExp(flags[0]!));
  }
});
