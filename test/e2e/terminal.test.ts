import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { portsFlag } from '../helpers/net.js';
import { ROOT, start, startRelay, type Child } from '../helpers/processes.js';
import { requireTools } from '../helpers/tools.js';

// Runs a program with its stderr on a pseudo-terminal and copies what it writes there to
// stdout. The child stays in this process group (no setsid, unlike pty.spawn or script),
// so the test's cleanup kills it with the group.
const ON_A_TERMINAL = `
import os, subprocess, sys
master, slave = os.openpty()
child = subprocess.Popen(sys.argv[1:], stderr=slave)
os.close(slave)
while True:
    try:
        data = os.read(master, 65536)
    except OSError:
        break
    if not data:
        break
    sys.stdout.buffer.write(data.replace(b'\\r\\n', b'\\n'))
    sys.stdout.buffer.flush()
sys.exit(child.wait())
`;

function relayOnATerminal(t: TestContext, args: string[] = []): Child {
  return start(t, 'python3', ['-c', ON_A_TERMINAL, path.join(ROOT, 'relay'), '0', ...portsFlag(), ...args]);
}

test('logs: on a terminal the relay writes readable lines by default', async (t) => {
  if (!requireTools(t, 'python3')) return;
  const relay = relayOnATerminal(t);
  const [line] = await relay.waitFor('stdout', /^.*relay listening.*$/);
  assert.match(line, /^\d\d:\d\d:\d\d\.\d{3} INFO +relay listening +controlPort=\d+ dataPort=\d+/);
});

test('logs: --log-format json on a terminal still writes JSON lines', async (t) => {
  if (!requireTools(t, 'python3')) return;
  const relay = relayOnATerminal(t, ['--log-format', 'json']);
  const [line] = await relay.waitFor('stdout', /^.*relay listening.*$/);
  assert.equal(JSON.parse(line).msg, 'relay listening');
});

test('logs: when stderr is a pipe the relay writes JSON lines by default', async (t) => {
  const relay = await startRelay(t, portsFlag());
  const listening = relay.stderr.find((line) => line.includes('relay listening'));
  assert.ok(listening !== undefined);
  assert.equal(JSON.parse(listening).msg, 'relay listening');
});
