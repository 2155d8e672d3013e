import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { KEEPALIVE_DELAY_MS } from '../../src/config/defaults.js';
import { assertEchoes } from '../helpers/echo.js';
import { dial, eventually, portsFlag } from '../helpers/net.js';
import { startRelay, startService } from '../helpers/processes.js';
import { requireTools } from '../helpers/tools.js';

/** /proc/net/tcp reports timers in USER_HZ ticks. */
const TICKS_PER_SECOND = 100;

interface TcpEntry {
  localPort: number;
  remotePort: number;
  state: number;
  /** 0 none, 1 retransmit, 2 keepalive (or another sk timer), 4 zero-window probe. */
  timer: number;
  ticksLeft: number;
  inode: string;
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
        inode: fields[9]!,
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
  await assertEchoes(client, 'keepalive?\n', 10_000);

  const acceptedByRelay = (): TcpEntry[] => tcpTable().filter((e) => e.state === ESTABLISHED && (e.localPort === echo.publicPort || e.localPort === relay.port));
  // The library's side (src/client/transport.ts) sets them as connect() options.
  const dialedByService = (): TcpEntry[] => tcpTable().filter((e) => e.state === ESTABLISHED && e.remotePort === relay.port);
  const limit = (KEEPALIVE_DELAY_MS / 1000) * TICKS_PER_SECOND;
  // Just after bytes moved a socket may still wait for an ACK (a retransmit timer): wait
  // until all of them are idle.
  await eventually(
    () => {
      const sockets = [...acceptedByRelay(), ...dialedByService()];
      return sockets.length >= 5 && sockets.every((e) => e.timer === 2);
    },
    10_000,
    'the public client, control and data connections idle with a keepalive timer, at both ends',
  );
  const sockets = [...acceptedByRelay(), ...dialedByService()];
  assert.ok(
    sockets.some((e) => e.localPort === echo.publicPort && e.remotePort === client.localPort),
    'the public client is among them',
  );
  for (const entry of sockets) assert.ok(entry.ticksLeft <= limit, `keepalive due in ${entry.ticksLeft / TICKS_PER_SECOND} s, not within ${KEEPALIVE_DELAY_MS / 1000} s`);
});

/**
 * The options of another process's sockets, read through a duplicate of each descriptor
 * (pidfd_getfd, Linux 5.6+; needs the right to ptrace that process, which root and the
 * same user normally have). No Node API reads a socket option, hence Python.
 */
const READ_OPTIONS = `
import ctypes, json, os, socket, sys
pid, inodes = int(sys.argv[1]), set(sys.argv[2].split(','))
libc = ctypes.CDLL(None, use_errno=True)
def fail():
    print(json.dumps({'error': os.strerror(ctypes.get_errno())})); sys.exit(0)
pidfd = libc.syscall(434, pid, 0)
if pidfd < 0: fail()
found = []
for name in os.listdir('/proc/%d/fd' % pid):
    try: target = os.readlink('/proc/%d/fd/%s' % (pid, name))
    except OSError: continue
    if target[8:-1] not in inodes or not target.startswith('socket:['): continue
    fd = libc.syscall(438, pidfd, int(name), 0)
    if fd < 0: fail()
    s = socket.socket(fileno=fd)
    found.append({'nodelay': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                  'keepalive': s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                  'keepidle': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)})
    s.close()
print(json.dumps(found))
`;

test(
  'every socket the relay accepts has TCP_NODELAY and its keepalive options, inherited from the listener',
  { skip: process.platform !== 'linux' && 'reads /proc and uses pidfd_getfd' },
  async (t) => {
    if (!requireTools(t, 'python3')) return;
    const relay = await startRelay(t, portsFlag());
    const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
    const client = await dial(t, echo.publicPort);
    await assertEchoes(client, 'options?\n', 10_000);
    const accepted = tcpTable().filter((e) => e.state === ESTABLISHED && (e.localPort === echo.publicPort || e.localPort === relay.port));
    assert.ok(accepted.length >= 3, 'the public client, control and data connections');
    const run = spawnSync('python3', ['-c', READ_OPTIONS, String(relay.workerPid), accepted.map((e) => e.inode).join(',')], { encoding: 'utf8', timeout: 10_000 });
    const result = JSON.parse(run.stdout) as { error: string } | { nodelay: number; keepalive: number; keepidle: number }[];
    if ('error' in result) {
      // Only a machine that forbids looking into another process (ptrace rules) gets here;
      // CI runs as root, where nothing does.
      const why = `cannot read the relay's sockets: ${result.error}`;
      if (process.env['TEST_REQUIRE_ALL_TOOLS'] === '1') assert.fail(why);
      t.skip(why);
      return;
    }
    assert.equal(result.length, accepted.length, 'every accepted socket found in the worker');
    for (const options of result) {
      assert.ok(options.nodelay !== 0, 'TCP_NODELAY');
      assert.ok(options.keepalive !== 0, 'SO_KEEPALIVE');
      assert.equal(options.keepidle, KEEPALIVE_DELAY_MS / 1000, 'TCP_KEEPIDLE');
    }
  },
);
