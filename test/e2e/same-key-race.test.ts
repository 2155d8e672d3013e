import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { portsFlag, within } from '../helpers/net.js';
import { NO_ENV_SECRET, startRelay } from '../helpers/processes.js';
import { randomHex } from '../helpers/protocol.js';

const TRIALS = 200;

/** Two control connections, opened first, then sent their HELLOs in the same event-loop turn. */
async function racePair(t: TestContext, port: number, hello: string, supersedes = true): Promise<string[][]> {
  const sockets: Socket[] = [];
  for (let i = 0; i < 2; i++) {
    const socket = connect({ port, host: '127.0.0.1' });
    t.after(() => socket.destroy());
    socket.on('error', () => undefined);
    sockets.push(socket);
  }
  await within(Promise.all(sockets.map((socket) => once(socket, 'connect'))), 5000, 'connecting');
  const received = sockets.map((socket) => {
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (text += chunk));
    return { socket, lines: () => text.split('\n').filter((line) => line !== '' && line !== 'PING') };
  });
  for (const socket of sockets) socket.write(`${hello}\n`);
  // Settled when one has OK and the other has OK too, or its connection was ended by the
  // relay; two OKs, when one of them was superseded since (with several workers the
  // later registration supersedes the earlier once the master has moved the key).
  await within(
    new Promise<void>((resolve) => {
      const check = (): void => {
        const has = (prefix: string): number => received.filter(({ lines }) => lines().some((line) => line.startsWith(prefix))).length;
        const ended = received.filter(({ socket }) => socket.readableEnded || socket.destroyed).length;
        const answered = received.every(({ socket, lines }) => lines().some((line) => line.startsWith('OK ')) || socket.readableEnded || socket.destroyed);
        if (answered && has('OK ') > 0 && (!supersedes || has('OK ') < 2 || has('ERR superseded') > 0 || ended > 0)) resolve();
      };
      for (const { socket } of received) {
        socket.on('data', check);
        socket.on('end', check);
        socket.on('close', check);
      }
    }),
    5000,
    'both registrations to settle',
  );
  const lines = received.map(({ lines }) => lines());
  for (const socket of sockets) socket.destroy();
  return lines;
}

const okPort = (lines: string[]): number | undefined => {
  const ok = lines.find((line) => line.startsWith('OK '));
  return ok === undefined ? undefined : Number(/^OK \S+:(\d+) /.exec(ok)![1]);
};

test(`same new resume key, two HELLOs at once, ${TRIALS} trials: one key owns one port, the later supersedes the earlier`, async (t) => {
  // The real ./relay: its worker listens through the master, so two registrations overlap.
  const relay = await startRelay(t, [...portsFlag(), '--resume-grace', '1', '--max-services', '1000'], NO_ENV_SECRET);
  let doubles = 0;
  for (let trial = 0; trial < TRIALS; trial++) {
    const [first, second] = await racePair(t, relay.port, `HELLO 1 host=127.0.0.1 resume=${randomHex(32)} feat=superseded`);
    const ports = [okPort(first!), okPort(second!)].filter((port) => port !== undefined);
    if (new Set(ports).size > 1) {
      doubles++;
      continue;
    }
    // Whoever got OK first was superseded by the other, which keeps the port.
    if (ports.length === 2)
      assert.ok(
        [first, second].some((lines) => lines!.some((line) => line.startsWith('ERR superseded'))),
        JSON.stringify([first, second]),
      );
  }
  assert.equal(doubles, 0, `${doubles} of ${TRIALS} trials gave one key two ports`);
});

test(`same new pool key, two members at once, ${TRIALS} trials: both are members of one address`, async (t) => {
  const relay = await startRelay(t, [...portsFlag(250), '--resume-grace', '1', '--max-services', '1000'], NO_ENV_SECRET);
  for (let trial = 0; trial < TRIALS; trial++) {
    const [first, second] = await racePair(t, relay.port, `HELLO 1 host=127.0.0.1 feat=pool pool=${randomHex(32)}`, false);
    const ports = [okPort(first!), okPort(second!)];
    assert.ok(ports[0] !== undefined && ports[0] === ports[1], `trial ${trial}: ${JSON.stringify([first, second])}`);
  }
});
