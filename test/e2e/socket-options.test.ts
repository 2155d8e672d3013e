import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { KEEPALIVE_DELAY_MS } from '../../src/config.js';
import { dial, eventually, portsFlag, readAtLeast } from '../helpers/net.js';
import { startRelay, startService } from '../helpers/processes.js';

/** /proc/net/tcp reports timers in USER_HZ ticks. */
const TICKS_PER_SECOND = 100;

interface TcpEntry {
  localPort: number;
  remotePort: number;
  state: number;
  /** 0 none, 1 retransmit, 2 keepalive (or another sk timer), 4 zero-window probe. */
  timer: number;
  ticksLeft: number;
}

function tcpTable(): TcpEntry[] {
  const entries: TcpEntry[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'latin1').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 6) continue;
      const [timer, ticksLeft] = fields[5]!.split(':').map((hex) => parseInt(hex, 16));
      entries.push({
        localPort: parseInt(fields[1]!.split(':')[1]!, 16),
        remotePort: parseInt(fields[2]!.split(':')[1]!, 16),
        state: parseInt(fields[3]!, 16),
        timer: timer!,
        ticksLeft: ticksLeft!,
      });
    }
  }
  return entries;
}

const ESTABLISHED = 1;

// The relay sets TCP_NODELAY and keepalive once on each listening socket, where Linux
// copies them into every accepted socket (src/net/listener-options.ts). If that copy
// did not happen, the accepted sockets would have no keepalive timer, or the system's
// default of two hours instead of the relay's 15 s.
test('every socket the relay accepts (public client, control, data) and the service dials has its 15 s keepalive', { skip: process.platform !== 'linux' && 'reads /proc/net/tcp' }, async (t) => {
  const relay = await startRelay(t, portsFlag());
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  const client = await dial(t, echo.publicPort);
  // The tunnel stays open (no FIN), so all three sockets are there to look at.
  client.write('keepalive?\n');
  assert.equal((await readAtLeast(client, 11)).toString(), 'keepalive?\n');

  const acceptedByRelay = (): TcpEntry[] =>
    tcpTable().filter((e) => e.state === ESTABLISHED && (e.localPort === echo.publicPort || e.localPort === relay.port));
  // The library's side (src/client/transport.ts) sets them as connect() options.
  const dialedByService = (): TcpEntry[] => tcpTable().filter((e) => e.state === ESTABLISHED && e.remotePort === relay.port);
  const limit = (KEEPALIVE_DELAY_MS / 1000) * TICKS_PER_SECOND;
  // Just after bytes moved a socket may still wait for an ACK (a retransmit timer): wait
  // until all of them are idle.
  await eventually(() => {
    const sockets = [...acceptedByRelay(), ...dialedByService()];
    return sockets.length >= 5 && sockets.every((e) => e.timer === 2);
  }, 10_000, 'the public client, control and data connections idle with a keepalive timer, at both ends');
  const sockets = [...acceptedByRelay(), ...dialedByService()];
  assert.ok(sockets.some((e) => e.localPort === echo.publicPort && e.remotePort === client.localPort), 'the public client is among them');
  for (const entry of sockets) assert.ok(entry.ticksLeft <= limit, `keepalive due in ${entry.ticksLeft / TICKS_PER_SECOND} s, not within ${KEEPALIVE_DELAY_MS / 1000} s`);
});
