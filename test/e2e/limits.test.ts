import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { assertEchoes } from '../helpers/echo.js';
import { dial, portsFlag, refusedHow } from '../helpers/net.js';
import { NO_ENV_SECRET, ROOT, start, startService } from '../helpers/processes.js';

/** ./relay 0 under `ulimit -n`, which sets the hard limit too, so Node cannot raise it. */
function relayUnderUlimit(t: Parameters<typeof start>[0], fds: number, args: string[]) {
  return start(t, 'bash', ['-c', `ulimit -n ${fds}; exec ./relay 0 "$@"`, 'relay', ...args], NO_ENV_SECRET);
}

test('limits: under ulimit -n 1024 the relay derives its client limits from the fd limit and says so at start', async (t) => {
  const relay = relayUnderUlimit(t, 1024, portsFlag());
  const line = await relay.waitFor('stderr', /"msg":"client limits"/);
  const record = JSON.parse(line.input!) as Record<string, unknown>;
  assert.equal(record.maxTunnels, 448);
  assert.equal(record.maxClientsPerService, 448);
  assert.match(String(record.defaults), /open-file limit 1024/);
});

test('limits: --help shows the defaults derived for this process', async () => {
  const help = await new Promise<string>((resolve, reject) =>
    execFile('bash', ['-c', 'ulimit -n 2048; exec ./relay --help'], { cwd: ROOT, timeout: 10_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
  assert.match(help, /--max-tunnels[^[]*open-file limit 2048\)\s*\[string\] \[default: 896\]/);
});

test('limits: --max-tunnels 2 is one cap across services: a third client of another service is closed', async (t) => {
  const relay = relayUnderUlimit(t, 4096, [...portsFlag(), '--max-tunnels', '2']);
  const port = Number((await relay.waitFor('stderr', /"controlPort":(\d+)/))[1]);
  const first = await startService(t, 'echoserver', ['127.0.0.1', String(port)], NO_ENV_SECRET);
  const second = await startService(t, 'echoserver', ['127.0.0.1', String(port)], NO_ENV_SECRET);
  const a = await dial(t, first.publicPort);
  await assertEchoes(a, 'a\n');
  const b = await dial(t, second.publicPort);
  await assertEchoes(b, 'b\n');
  assert.equal(await refusedHow(t, second.publicPort), 'reset', 'the third client is reset at once');
  await relay.waitFor('stderr', /over 2 tunnels in all/, 3000);
  await assertEchoes(a, 'a again\n');
  a.destroy();
  await relay.waitFor('stderr', /"msg":"tunnel closed"/, 3000);
  // The freed place is usable again.
  await assertEchoes(await dial(t, second.publicPort), 'd\n');
});
