import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { dial, echoThrough, portsFlag, randomData, sha256 } from '../helpers/net.js';
import { ROOT, startRelay, start } from '../helpers/processes.js';
import { requireTools } from '../helpers/tools.js';

// docs/integrating.md promises a service in another language in an afternoon; this
// keeps the Python example it points to honest, secret and all.
test('another language: the Python example service registers with a secret and echoes clients', async (t) => {
  if (!requireTools(t, 'python3')) return;
  const relay = await startRelay(t, [...portsFlag(), '--secret', 'py-secret']);
  const service = start(t, 'python3', ['-u', path.join(ROOT, 'examples/echo_service.py'), '127.0.0.1', String(relay.port), 'py-secret']);
  const match = await service.waitFor('stdout', /^established relay address: 127\.0\.0\.1:(\d+)$/);
  const port = Number(match[1]);
  const clients = Array.from({ length: 5 }, async () => {
    const data = randomData(256 * 1024);
    const socket = await dial(t, port);
    assert.equal(sha256(await echoThrough(socket, data)), sha256(data));
  });
  await Promise.all(clients);
});
