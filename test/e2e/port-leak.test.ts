import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync, readlinkSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { deadline, eventually, listenLocal, portBlock } from '../helpers/net.js';
import { NO_ENV_SECRET, startRelay, type RelayProcess } from '../helpers/processes.js';
import { registerRaw } from '../helpers/protocol.js';

/** Registrations per run: each one tries the busy ports at the bottom of the range first. */
const REGISTRATIONS = 40;
/** Sockets a relay may hold above its count before the run (a late close, a metrics scrape). */
const SLACK = 3;

/** Sockets open in a process, from /proc/PID/fd. */
function socketsOf(pid: number): number {
  let count = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) count++;
    } catch {
      // closed between the listing and the read
    }
  }
  return count;
}

/**
 * A port in TIME-WAIT on 127.0.0.1: a connection from an ephemeral port (no
 * SO_REUSEADDR) that this side closed first. Nothing may listen on it for a minute.
 */
async function timeWaitPort(t: TestContext): Promise<number> {
  const { port } = await listenLocal(t, (socket) => {
    socket.on('end', () => socket.end());
    socket.resume();
  });
  const client = connect({ port, host: '127.0.0.1' });
  await once(client, 'connect', { signal: deadline(5000) });
  const local = client.localPort!;
  client.end();
  await once(client, 'close', { signal: deadline(5000) });
  return local;
}

/** Holds a port the way another program would (a listener of this process), if it is free. */
async function hold(t: TestContext, port: number): Promise<void> {
  const server = createServer();
  const held = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, () => resolve(true));
  });
  if (held) t.after(() => server.close());
  t.diagnostic(`port ${port}: ${held ? 'held by the test' : 'busy already'}`);
}

/** REGISTRATIONS services register at once and leave for good; the relay's sockets must come back to where they were. */
async function churn(t: TestContext, relay: RelayProcess, busy: number[]): Promise<void> {
  const before = { master: socketsOf(relay.pid), worker: socketsOf(relay.workerPid) };
  const services = await Promise.all(Array.from({ length: REGISTRATIONS }, () => registerRaw(t, relay.port)));
  const ports = services.map(({ registration }) => registration.publicPort);
  assert.ok(!ports.some((port) => busy.includes(port)), `no service got a busy port: ${JSON.stringify(ports)}`);
  // Gone for good (LEAVE): each door closes at once, so a socket still open is a leak.
  for (const { control } of services) control.send('LEAVE');
  const now = (): string => `master ${socketsOf(relay.pid)} (was ${before.master}), worker ${socketsOf(relay.workerPid)} (was ${before.worker})`;
  await eventually(
    () => socketsOf(relay.pid) <= before.master + SLACK && socketsOf(relay.workerPid) <= before.worker + SLACK,
    10_000,
    `the relay's sockets to return to their count before ${REGISTRATIONS} registrations came and went`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${now()}`);
  });
  t.diagnostic(now());
}

test('sockets: registrations that come and go leave no socket behind in the master or the worker', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const { first, last } = portBlock(REGISTRATIONS + 20);
  const relay = await startRelay(t, ['--ports', `${first}-${last}`], NO_ENV_SECRET);
  await churn(t, relay, []);
});

test(
  'sockets: a port of the range that another program holds, or that is in TIME-WAIT, leaks no socket however many registrations try it',
  { skip: process.platform !== 'linux' && 'reads /proc' },
  async (t) => {
    // A TIME-WAIT port is an ephemeral one; the range starts there, so every registration tries it and the next one first.
    const waiting = await timeWaitPort(t);
    await hold(t, waiting + 1);
    const relay = await startRelay(t, ['--ports', `${waiting}-${waiting + REGISTRATIONS + 60}`], NO_ENV_SECRET);
    await churn(t, relay, [waiting, waiting + 1]);
    // Once more: a busy port that was skipped is skipped again, still without a leak.
    await churn(t, relay, [waiting, waiting + 1]);
  },
);
