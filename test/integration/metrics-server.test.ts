import { test } from 'node:test';
import assert from 'node:assert/strict';
import { boundPort, serveMonitor } from '../../src/monitor/http.js';
import { Overview } from '../../src/monitor/overview.js';
import { RelayStats } from '../../src/monitor/stats.js';

test('metrics listener: an error after it is up (a failed accept) is reported, not thrown, and /metrics keeps answering', async (t) => {
  const reported: Error[] = [];
  const stats = new RelayStats();
  const server = await serveMonitor({ stats, overview: new Overview(stats.bytes, () => []) }, '127.0.0.1', 0, { onError: (err) => reported.push(err) });
  t.after(() => server.close());
  // What libuv reports when accept() runs out of descriptors; without a listener it would be uncaught.
  const emfile = Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' });
  server.emit('error', emfile);
  assert.deepEqual(reported, [emfile]);
  const response = await fetch(`http://127.0.0.1:${boundPort(server)}/healthz`);
  assert.equal(await response.text(), 'ok\n');
});
