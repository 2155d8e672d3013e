import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { deferred, dial, freePort, howItEnds, listenLocal, portsFlag, readToEnd, refusedHow, within } from '../helpers/net.js';
import { startRelay, startService, type ServiceProcess } from '../helpers/processes.js';

/** ./relay and ./expose in front of a backend whose connections the test controls. */
async function exposeBackend(t: Parameters<typeof startRelay>[0], onBackend: (socket: Socket) => void): Promise<ServiceProcess> {
  const backend = await listenLocal(t, onBackend);
  const relay = await startRelay(t, portsFlag());
  return startService(t, 'expose', ['127.0.0.1', String(relay.port), `127.0.0.1:${backend.port}`]);
}

test('half-close: a backend that reads to EOF and then answers gets the whole request and its answer arrives', async (t) => {
  const expose = await exposeBackend(t, (socket) => {
    void readToEnd(socket).then((request) => socket.end(`got ${request.length} bytes: ${request.toString()}`));
  });
  const client = await dial(t, expose.publicPort);
  client.end('question');
  assert.equal((await readToEnd(client)).toString(), 'got 8 bytes: question');
});

test('half-close: a backend that sends, shuts down its write side and keeps reading still gets the client bytes', async (t) => {
  const backendGot = deferred<string>();
  const expose = await exposeBackend(t, (socket) => {
    socket.end('banner then FIN');
    void readToEnd(socket).then((data) => backendGot.resolve(data.toString()));
  });
  const client = await dial(t, expose.publicPort);
  assert.equal((await readToEnd(client)).toString(), 'banner then FIN');
  client.write('still talking after your FIN');
  client.end();
  assert.equal(await within(backendGot.promise, 5000, 'backend to read the client'), 'still talking after your FIN');
});

/** A public client and the backend socket that carries its bytes. */
interface Pair {
  client: Socket;
  backend: Socket;
}

/**
 * Two public clients through ./expose, each paired with its backend socket by the byte it
 * sent. A pair counts as ready once its backend has read that byte: a socket closed with
 * unread bytes sends a reset (TCP's rule), and a reset that overtakes unread data is
 * reported by Node (libuv) as a plain EOF, on the backend as anywhere.
 */
async function twoPairs(t: Parameters<typeof startRelay>[0]): Promise<[Pair, Pair]> {
  const backends = new Map<string, Socket>();
  const arrived = deferred<void>();
  const expose = await exposeBackend(t, (socket) => {
    socket.once('data', (chunk: Buffer) => {
      backends.set(chunk.toString(), socket);
      if (backends.size === 2) arrived.resolve();
    });
  });
  const first = await dial(t, expose.publicPort);
  const second = await dial(t, expose.publicPort);
  first.write('x');
  second.write('y');
  await within(arrived.promise, 5000, 'both bytes at the backend');
  return [
    { client: first, backend: backends.get('x')! },
    { client: second, backend: backends.get('y')! },
  ];
}

test('close propagates: a client FIN reaches the backend, and a backend close reaches the client', async (t) => {
  const [first, second] = await twoPairs(t);
  const backendSeen = howItEnds(first.backend);
  first.client.end();
  assert.equal(await backendSeen, 'end');
  const clientSeen = howItEnds(second.client);
  second.backend.destroy();
  assert.equal(await clientSeen, 'end', 'a plain close arrives as a FIN');
});

test('reset propagates both ways within a bound', async (t) => {
  const [clientResets, backendResets] = await twoPairs(t);
  const backendSeen = howItEnds(clientResets.backend);
  clientResets.client.resetAndDestroy();
  assert.equal(await backendSeen, 'reset', 'a client reset must reach the backend as a reset');

  const clientSeen = howItEnds(backendResets.client);
  backendResets.backend.resetAndDestroy();
  assert.equal(await clientSeen, 'reset', 'a backend reset must reach the client as a reset');
});

test('a TARGET that refuses closes the public client promptly', async (t) => {
  const deadPort = await freePort();
  const relay = await startRelay(t, portsFlag());
  const expose = await startService(t, 'expose', ['127.0.0.1', String(relay.port), String(deadPort)]);
  const started = Date.now();
  // Not dial(): a prewarmed connection makes the reset fast enough to beat this side's
  // own 'connect' (connect() then fails with ECONNRESET), and that is a prompt close too.
  const ended = await refusedHow(t, expose.publicPort);
  assert.ok(['reset', 'end', 'close'].includes(ended));
  assert.ok(Date.now() - started < 3000);
  await expose.waitFor('stderr', /target refused the connection/);
});
