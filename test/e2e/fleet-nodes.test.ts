import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { freePort } from '../helpers/net.js';
import { planFleet } from '../helpers/fleet.js';
import { NO_ENV_SECRET, ROOT, start } from '../helpers/processes.js';
import { requireTools } from '../helpers/tools.js';

// How fleet nodes name themselves and learn of each other.

test('fleet: a node on ::1 is named [::1]:PORT, and its log line names it once', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t, 20);
  const port = await freePort();
  const args = [String(port), '--bind', '::1', '--ports', `${plan.range.first}-${plan.range.last}`, '--public-host', 'relay.test', '--etcd', plan.etcd.url, '--log-format', 'json'];
  const node = start(t, path.join(ROOT, 'relay'), args, NO_ENV_SECRET);
  const [line] = await node.waitFor('stderr', /^.*"msg":"fleet: node registered in etcd".*$/m, 20_000);
  const name = `[::1]:${port}`;
  assert.equal(line!.match(/"node":/g)?.length, 1, `one "node" key: ${line}`);
  assert.equal((JSON.parse(line!) as { node: string }).node, name);
  assert.match(line!, new RegExp(`"address":"${name.replace(/[[\]]/g, '\\$&')}"`));
});
