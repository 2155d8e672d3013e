import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dial, portsFlag, readAtLeast, eventually } from '../helpers/net.js';
import { start, startRelay } from '../helpers/processes.js';
import { dialData } from '../helpers/protocol.js';
import { requireTools } from '../helpers/tools.js';

/** Clients in the burst: their CONNECT lines (about 36 bytes each) are more than the kernel's buffers (~260 KB on loopback) plus 64 KiB. */
const BURST = 10_000;

/**
 * A service that registers with a tiny receive buffer and segment size, as over a real
 * network (loopback's 64 KiB segments would let the kernel absorb the whole burst), reads nothing until SIGUSR1, then prints every control line it gets.
 */
const SLOW_SERVICE = `
import signal, socket, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
s.connect(('127.0.0.1', int(sys.argv[1])))
s.sendall(b'HELLO 1 host=127.0.0.1\\n')
f = s.makefile('rb')
print(f.readline().decode().strip(), flush=True)
signal.sigwait({signal.SIGUSR1})
for line in f:
    text = line.decode().strip()
    if text == 'PING':
        s.sendall(b'PONG\\n')
    print(text, flush=True)
print('closed', flush=True)
`;

test('control buffer: a burst of 10000 clients while the service is not reading its control connection refuses some clients but keeps the registration', async (t) => {
  if (!requireTools(t, 'python3')) return;
  const relay = await startRelay(t, [...portsFlag(), '--dialback-timeout', '60', '--heartbeat', '10', '--max-pending', String(BURST), '--max-clients', String(BURST)]);
  const service = start(t, 'python3', ['-c', SLOW_SERVICE, String(relay.port)]);
  const [, publicPort, dataPort] = await service.waitFor('stdout', /^OK \S+:(\d+) data=(\d+)/);

  let closed = 0;
  for (let i = 0; i < BURST; i += 500) {
    // A client may be refused before its own connect() has completed: that counts as refused too.
    const batch = await Promise.allSettled(Array.from({ length: Math.min(500, BURST - i) }, () => dial(t, Number(publicPort))));
    for (const result of batch) {
      if (result.status === 'rejected') closed++;
      else result.value.once('close', () => closed++);
    }
  }
  const connects = (): number => service.stdout.filter((line) => line.startsWith('CONNECT ')).length;
  await eventually(() => closed > 0 || relay.stderr.some((line) => line.includes('not reading')), 15_000, 'the burst to fill the control connection');
  // The relay has dealt with every client once the service, reading again, has each one announced or refused.
  service.signal('SIGUSR1');
  await eventually(() => connects() + closed === BURST || service.stdout.includes('closed'), 20_000, 'every client announced or refused');
  t.diagnostic(`${connects()} CONNECT lines, ${closed} clients refused while the control connection was full`);
  assert.ok(!service.stdout.includes('closed'), `the registration was dropped: ${relay.stderr.filter((line) => line.includes('service left')).join('\n')}`);
  assert.ok(closed > 0, 'the burst filled the control connection');
  assert.ok(
    relay.stderr.some((line) => line.includes('control connection busy')),
    'the refusals were logged',
  );

  // The registration still works: a new client is announced and can be served.
  const from = service.stdout.length;
  const fresh = await dial(t, Number(publicPort));
  const [, token] = await service.waitFor('stdout', /^CONNECT ([0-9a-f]+)/, 5000, from);
  const { peer, reply } = await dialData(t, Number(dataPort), `DATA ${token}`);
  assert.match(reply, /^CLIENT /);
  peer.socket.write('hello');
  assert.equal((await readAtLeast(fresh, 5, 5000)).toString(), 'hello');
});
