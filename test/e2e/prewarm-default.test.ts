import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { spawnSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import type { RelayView } from '../../src/monitor/api.js';
import { getJson, relayWithDashboard } from '../helpers/dashboard.js';
import { deadline, dial, echoThrough, eventually, readAtLeast } from '../helpers/net.js';
import { startService, type RelayProcess } from '../helpers/processes.js';
import { registerRaw } from '../helpers/protocol.js';
import { requireTools, toolPath } from '../helpers/tools.js';

const relayView = (base: string): Promise<RelayView> => getJson<RelayView>(base, 'api/relay');

async function echoOnce(t: TestContext, port: number, text: string): Promise<void> {
  const client = await dial(t, port);
  assert.equal((await echoThrough(client, Buffer.from(text))).toString(), text);
  client.end();
}

test('prewarm by default: a fresh ./echoserver parks one idle connection at the relay, serves its first client from it and parks one again', async (t) => {
  const relay = await relayWithDashboard(t);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  await eventually(async () => (await relayView(relay.base)).warmIdle === 1, 5000, 'one parked connection');
  await echoOnce(t, echo.publicPort, 'first client');
  // Served from the parked connection: no dial-back was waited for.
  const after = await relayView(relay.base);
  assert.equal(after.dialback.count, 1);
  assert.equal(after.dialback.meanMs, 0, 'the first client came on a prewarmed connection');
  await eventually(async () => (await relayView(relay.base)).warmIdle >= 1, 5000, 'a parked connection again');
});

test('--prewarm 0: ./echoserver parks nothing and its clients are dialed back', async (t) => {
  const relay = await relayWithDashboard(t);
  const cold = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port), '--prewarm', '0']);
  // A second service, prewarmed, on the same relay: once its connection is parked, the
  // cold one has had as long to park one of its own.
  await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  await eventually(async () => (await relayView(relay.base)).warmIdle === 1, 5000, "the prewarmed service's parked connection");
  await echoOnce(t, cold.publicPort, 'dialed back');
  const view = await relayView(relay.base);
  assert.equal(view.warmIdle, 1, 'only the prewarmed service parks a connection');
  assert.equal(view.dialback.count, 1);
  assert.ok((view.dialback.meanMs ?? 0) > 0, 'the client of the cold service waited for a dial-back');
});

test('--max-warm-total: the relay never holds more idle connections than its total, and every service is still served', async (t) => {
  const relay = await relayWithDashboard(t, ['--max-warm-total', '2']);
  const services = await Promise.all([1, 2, 3, 4].map(() => startService(t, 'echoserver', ['127.0.0.1', String(relay.port)])));
  let most = 0;
  const sample = async (): Promise<RelayView> => {
    const view = await relayView(relay.base);
    most = Math.max(most, view.warmIdle);
    return view;
  };
  // Two parked, and the two services refused have heard ERR limit.
  await eventually(
    async () => {
      const view = await sample();
      return view.warmIdle === 2 && (view.refusals['limit'] ?? 0) >= 2;
    },
    5000,
    'two parked connections, two services refused',
  );
  for (const [i, service] of services.entries()) {
    await echoOnce(t, service.publicPort, `service ${i}`);
    await sample();
  }
  await eventually(async () => (await sample()).warmIdle === 2, 5000, 'two parked connections again');
  assert.ok(most <= 2, `the relay held ${most} idle connections`);
  // Backed off, not spinning: a service retrying at once would have been refused
  // hundreds of times by now. Each may be refused once at start and once when a client
  // makes its pool want two.
  const refused = (await sample()).refusals['limit'] ?? 0;
  assert.ok(refused <= 2 * services.length, `${refused} IDLE refusals`);
});

/** A raw service that asked for a prewarm key, with one IDLE connection parked. */
async function parkedService(t: TestContext, relay: RelayProcess & { base: string }): Promise<{ idle: Socket; publicPort: number }> {
  const { control, registration } = await registerRaw(t, relay.port, { hello: 'HELLO 1 host=127.0.0.1 warm=1' });
  t.after(() => control.socket.destroy());
  const warmKey = /warm=([0-9a-f]{32})/.exec(control.lines[0]!)?.[1];
  assert.ok(warmKey !== undefined, `a prewarm key in ${control.lines[0]}`);
  const idle = connect(registration.dataPort, '127.0.0.1');
  t.after(() => idle.destroy());
  idle.on('error', () => {});
  idle.write(`IDLE ${warmKey}\n`);
  await eventually(async () => (await relayView(relay.base)).warmIdle === 1, 5000, 'the IDLE connection parked');
  return { idle, publicPort: registration.publicPort };
}

/** TCP segments with data that the connection from this local port has received (ss -i). */
function dataSegmentsIn(localPort: number): number {
  const ss = spawnSync(toolPath('ss'), ['-tinH', 'state', 'established', `( sport = :${localPort} )`], { encoding: 'utf8', timeout: 5000 });
  assert.match(ss.stdout, new RegExp(`:${localPort}\\s`), `ss shows the connection from ${localPort}`);
  // ss leaves a counter out while it is 0.
  return Number(/data_segs_in:(\d+)/.exec(ss.stdout)?.[1] ?? 0);
}

/**
 * Runs `act` while the relay is stopped (SIGSTOP to its process group): the kernel
 * completes connections to its listening ports and queues their bytes meanwhile, so
 * what `act` sends is waiting when the relay accepts.
 */
async function whileStopped(relay: RelayProcess, act: () => Promise<void>): Promise<void> {
  process.kill(-relay.pid, 'SIGSTOP');
  try {
    await act();
  } finally {
    process.kill(-relay.pid, 'SIGCONT');
  }
}

test('a prewarmed connection gets the CLIENT line and the bytes the client already sent in one TCP segment; a client that sends nothing gets its CLIENT line at once', async (t) => {
  if (!requireTools(t, 'ss')) return;
  const relay = await relayWithDashboard(t);
  const { idle, publicPort } = await parkedService(t, relay);
  const client = connect(publicPort, '127.0.0.1');
  t.after(() => client.destroy());
  const request = 'GET / HTTP/1.1\r\nHost: example\r\n\r\n';
  await whileStopped(relay, async () => {
    await once(client, 'connect', { signal: deadline(5000) });
    await new Promise<void>((resolve, reject) => client.write(request, (err) => (err ? reject(err) : resolve())));
  });
  const [chunk] = (await once(idle, 'data', { signal: deadline(5000) })) as [Buffer];
  assert.equal(chunk.toString(), `CLIENT 127.0.0.1 ${client.localPort} 127.0.0.1 ${publicPort}\n${request}`);
  // One read could also gather two writes that both arrived before it: the segment count tells.
  assert.equal(dataSegmentsIn(idle.localPort!), 1, 'the CLIENT line and the request came in one segment');
  idle.write('HTTP/1.1 204 No Content\r\n\r\n');
  assert.equal((await readAtLeast(client, 27)).toString(), 'HTTP/1.1 204 No Content\r\n\r\n');

  // A server-speaks-first protocol: the client waits for a banner, and the relay must not wait for the client.
  const second = await parkedService(t, relay);
  const quiet = await dial(t, second.publicPort);
  const [line] = (await once(second.idle, 'data', { signal: deadline(5000) })) as [Buffer];
  assert.equal(line.toString(), `CLIENT 127.0.0.1 ${quiet.localPort} 127.0.0.1 ${second.publicPort}\n`);
  second.idle.write('220 banner\r\n');
  assert.equal((await readAtLeast(quiet, 12)).toString(), '220 banner\r\n');
});
