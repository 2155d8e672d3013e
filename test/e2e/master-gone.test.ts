import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { dial, howItEnds, listenLocal, portsFlag, readAtLeast, eventually } from '../helpers/net.js';
import { isRunning } from '../helpers/observe.js';
import { NO_ENV_SECRET, startRelay, startService, type RelayProcess } from '../helpers/processes.js';

// The master killed with -9 leaves its worker alive with open tunnels: the worker must
// end them with a reset, as any cut tunnel, never with a FIN a client would take for the
// end of its download.

const MiB = 1024 * 1024;

/** A relay, ./expose in front of a backend that sends 1 MiB and never finishes, and a client that has that MiB. */
async function downloading(t: TestContext, relayArgs: string[]): Promise<{ relay: RelayProcess; client: Socket }> {
  const relay = await startRelay(t, [...portsFlag(), ...relayArgs], NO_ENV_SECRET);
  const { port: backend } = await listenLocal(t, (socket) => void socket.write(Buffer.alloc(MiB, 7)));
  const expose = await startService(t, 'expose', ['127.0.0.1', String(relay.port), String(backend)], NO_ENV_SECRET);
  const client = await dial(t, expose.publicPort);
  await readAtLeast(client, MiB);
  return { relay, client };
}

test('master killed with -9: the worker drains within --drain-timeout, then resets the open download (never a clean end) and exits', async (t) => {
  const { relay, client } = await downloading(t, ['--drain-timeout', '0.5']);
  const ending = howItEnds(client, 10_000);
  relay.signal('SIGKILL');
  assert.equal(await ending, 'reset', 'the client sees a reset');
  await eventually(() => !isRunning(relay.workerPid), 5000, 'the worker to exit');
});

test('master killed with -9: SIGTERM to the orphaned worker resets its open download at once', async (t) => {
  const { relay, client } = await downloading(t, ['--drain-timeout', '60']);
  const ending = howItEnds(client, 10_000);
  relay.signal('SIGKILL');
  // Its log goes on to the stderr pipe it shares with the dead master.
  await eventually(() => relay.stderr.some((line) => /"msg":"the master process is gone/.test(line)), 5000, 'the worker to notice');
  process.kill(relay.workerPid, 'SIGTERM');
  assert.equal(await ending, 'reset', 'the client sees a reset');
  await eventually(() => !isRunning(relay.workerPid), 5000, 'the worker to exit');
});
