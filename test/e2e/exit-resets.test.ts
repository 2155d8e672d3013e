import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assertEchoes } from '../helpers/echo.js';
import { dial, howItEnds, portsFlag, within } from '../helpers/net.js';
import { NO_ENV_SECRET, startRelay, startService } from '../helpers/processes.js';

// A program that exits while it still has public clients cuts them: each must see a
// reset, never a FIN, which a client takes for the end of what it was sent.

function resumeFile(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-exit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'key');
}

test('a service that exits because it was superseded resets the clients it was serving', async (t) => {
  const relay = await startRelay(t, portsFlag(), NO_ENV_SECRET);
  const key = resumeFile(t);
  const first = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port), '--resume-file', key], NO_ENV_SECRET);
  const client = await dial(t, first.publicPort);
  await assertEchoes(client, 'served by the first process\n');
  const ending = howItEnds(client, 10_000);
  await startService(t, 'echoserver', ['127.0.0.1', String(relay.port), '--resume-file', key], NO_ENV_SECRET);
  const exited = await within(first.exited, 10_000, 'the superseded service to exit');
  assert.equal(exited.code, 1);
  assert.equal(await ending, 'reset');
});
