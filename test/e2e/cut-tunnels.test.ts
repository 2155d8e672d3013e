import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { dial, howItEnds, listenLocal, portsFlag, readAtLeast, within } from '../helpers/net.js';
import { NO_ENV_SECRET, startRelay, startService, type Child } from '../helpers/processes.js';

// A tunnel cut by anyone must end in a reset: a FIN after part of a download would look
// to the client like the whole of it.

const MiB = 1024 * 1024;

/** A backend that sends 1 MiB at once and then holds the connection open, never finishing. */
async function endlessDownload(t: TestContext): Promise<number> {
  const { port } = await listenLocal(t, (socket) => {
    socket.write(Buffer.alloc(MiB, 7));
  });
  return port;
}

/** A relay and ./expose in front of endlessDownload, and a client that has its first MiB. */
async function downloading(t: TestContext, exposeArgs: string[], relayArgs: string[] = []): Promise<{ relay: Child; expose: Child; client: Socket }> {
  const relay = await startRelay(t, [...portsFlag(), ...relayArgs], NO_ENV_SECRET);
  const backend = await endlessDownload(t);
  const expose = await startService(t, 'expose', ['127.0.0.1', String(relay.port), String(backend), ...exposeArgs], NO_ENV_SECRET);
  const client = await dial(t, expose.publicPort);
  await readAtLeast(client, MiB);
  return { relay, expose, client };
}

test('cut by the service: ./expose stopped by SIGTERM whose --drain-timeout runs out resets the download, never a clean end', async (t) => {
  const { expose, client } = await downloading(t, ['--drain-timeout', '0.3']);
  const ending = howItEnds(client, 5000);
  expose.signal('SIGTERM');
  assert.equal(await ending, 'reset');
  assert.equal((await within(expose.exited, 5000, 'expose to exit')).code, 0);
});

test('cut by the service: a second SIGTERM to ./expose resets the download at once', async (t) => {
  const { expose, client } = await downloading(t, ['--drain-timeout', '30']);
  const ending = howItEnds(client, 5000);
  expose.signal('SIGTERM');
  await expose.waitFor('stderr', /"msg":"stopping/, 3000);
  expose.signal('SIGTERM');
  assert.equal(await ending, 'reset');
  assert.equal((await within(expose.exited, 3000, 'expose to exit')).code, 1);
});

test('cut by the service: a second SIGTERM to ./echoserver resets its open client', async (t) => {
  const relay = await startRelay(t, portsFlag(), NO_ENV_SECRET);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port), '--drain-timeout', '30'], NO_ENV_SECRET);
  const client = await dial(t, echo.publicPort);
  client.write('held open\n');
  await readAtLeast(client, 10);
  const ending = howItEnds(client, 5000);
  echo.signal('SIGTERM');
  await echo.waitFor('stderr', /"msg":"stopping/, 3000);
  echo.signal('SIGTERM');
  assert.equal(await ending, 'reset');
});

test('cut by the relay: a second SIGTERM resets the download and still writes its access-log line', async (t) => {
  const { relay, client } = await downloading(t, [], ['--drain-timeout', '30']);
  const ending = howItEnds(client, 5000);
  relay.signal('SIGTERM');
  await relay.waitFor('stderr', /"msg":"shutting down"/, 3000);
  relay.signal('SIGTERM');
  assert.equal(await ending, 'reset');
  assert.equal((await within(relay.exited, 3000, 'the relay to exit')).code, 1);
  const lines = relay.stderr.filter((line) => line.includes('"msg":"tunnel closed"'));
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /"closedBy":"relay","outcome":"destroyed"/, 'the line says the relay cut it');
});

test('cut by the relay at the end of its drain: every tunnel is reset and has its one access-log line', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--drain-timeout', '0.5'], NO_ENV_SECRET);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], NO_ENV_SECRET);
  const clients: Socket[] = [];
  for (let i = 0; i < 17; i++) {
    const client = await dial(t, echo.publicPort);
    client.write('open\n');
    await readAtLeast(client, 5);
    clients.push(client);
  }
  const endings = Promise.all(clients.map((client) => howItEnds(client, 5000)));
  relay.signal('SIGTERM');
  assert.equal((await within(relay.exited, 5000, 'the relay to exit')).code, 0);
  assert.deepEqual(new Set(await endings), new Set(['reset']));
  const lines = relay.stderr.filter((line) => line.includes('"msg":"tunnel closed"'));
  assert.equal(lines.length, 17, `${lines.length} of 17 tunnels have an access-log line`);
  for (const line of lines) assert.match(line, /"closedBy":"relay","outcome":"destroyed"/, 'the line says the relay cut it');
});
