import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { portsFlag, within } from '../helpers/net.js';
import { NO_ENV_SECRET, ROOT, start, startRelay } from '../helpers/processes.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-state-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** ./relay that must refuse to start: its exit code and the stderr lines that are not JSON log records. */
async function refusedStart(t: TestContext, args: string[]): Promise<{ code: number | null; lines: string[] }> {
  const relay = start(t, path.join(ROOT, 'relay'), ['0', ...portsFlag(), ...args], NO_ENV_SECRET);
  const { code } = await within(relay.exited, 15_000, 'the relay to refuse to start');
  return { code, lines: relay.stderr.filter((line) => !line.startsWith('{')) };
}

test('--state in a directory anyone can write without the sticky bit: one line naming the directory, exit 2; a sticky one is accepted', async (t) => {
  const dir = tempDir(t);
  chmodSync(dir, 0o777);
  const state = path.join(dir, 'leases.json');
  const { code, lines } = await refusedStart(t, ['--state', state]);
  assert.equal(code, 2);
  assert.deepEqual(lines, [
    `relay: --state ${state}: its directory ${dir} is writable by others (mode 0777) without the sticky bit, so anyone could replace the leases: chmod go-w ${dir}, or use another directory`,
  ]);

  chmodSync(dir, 0o1777);
  const relay = await startRelay(t, [...portsFlag(), '--state', state], NO_ENV_SECRET);
  await relay.waitFor('stderr', /"msg":"relay listening"/);
});
