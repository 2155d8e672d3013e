import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { portsFlag } from '../helpers/net.js';
import { startRelay, startService } from '../helpers/processes.js';

const environ = (pid: number): string[] => readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
const commandLine = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');

// Both settings are measured in docs/benchmarks.md: without the first, bulk relaying cost
// 2-5 times the CPU in page faults; without the second, the idle relay's memory per
// tunnel was about twice as large.
test('the relay worker runs with a high glibc trim threshold and a 4 MiB young generation', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const relay = await startRelay(t, portsFlag());
  assert.ok(environ(relay.workerPid).includes('MALLOC_TRIM_THRESHOLD_=134217728'), 'trim threshold in the worker environment');
  assert.ok(commandLine(relay.workerPid).includes('--max-semi-space-size=4'), 'young generation flag on the worker command line');
});

test("the operator's own MALLOC_TRIM_THRESHOLD_ and --max-semi-space-size win", { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const relay = await startRelay(t, portsFlag(), { MALLOC_TRIM_THRESHOLD_: '1048576', NODE_OPTIONS: '--max-semi-space-size=8' });
  assert.ok(environ(relay.workerPid).includes('MALLOC_TRIM_THRESHOLD_=1048576'));
  assert.ok(!commandLine(relay.workerPid).some((arg) => arg.startsWith('--max-semi-space-size')), 'no flag of ours beside NODE_OPTIONS');
});

test('./echoserver and ./expose start with the same trim threshold unless one is set', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const relay = await startRelay(t, portsFlag());
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  assert.ok(environ(echo.pid).includes('MALLOC_TRIM_THRESHOLD_=134217728'));
  const expose = await startService(t, 'expose', ['127.0.0.1', String(relay.port), String(echo.publicPort)], { MALLOC_TRIM_THRESHOLD_: '65536' });
  assert.ok(environ(expose.pid).includes('MALLOC_TRIM_THRESHOLD_=65536'));
});
