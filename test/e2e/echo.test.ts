import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dial, deadline, echoThrough, freeBlock, portBlock, portsFlag, randomData, readToEnd, sha256 } from '../helpers/net.js';
import { startRelay, startService } from '../helpers/processes.js';
import { requireTools } from '../helpers/tools.js';

test('example session: ./relay, ./echoserver, and nc echo a line through the public port', async (t) => {
  if (!requireTools(t, 'nc')) return;
  const ports = await freeBlock();
  const relay = await startRelay(t, ['--ports', `${ports.first}-${ports.last}`]);
  const echo = await startService(t, 'echoserver', ['localhost', String(relay.port)]);
  assert.equal(echo.publicHost, 'localhost');
  assert.equal(echo.publicPort, ports.first);
  assert.deepEqual(echo.stdout, [`established relay address: localhost:${ports.first}`]);

  const nc = spawn('nc', ['-N', 'localhost', String(echo.publicPort)], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => nc.kill('SIGKILL'));
  nc.stdin.end('Hello, world\n');
  const output: Buffer[] = [];
  nc.stdout.on('data', (chunk: Buffer) => output.push(chunk));
  const [code] = await once(nc, 'exit', { signal: deadline(10_000) });
  assert.equal(code, 0);
  assert.equal(Buffer.concat(output).toString(), 'Hello, world\n');
});

test('byte integrity: 32 MiB of random bytes, written and read concurrently, come back identical', async (t) => {
  const relay = await startRelay(t, portsFlag());
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  const data = randomData(32 * 1024 * 1024);
  const socket = await dial(t, echo.publicPort);
  const back = await echoThrough(socket, data, 256 * 1024, 60_000);
  assert.equal(back.length, data.length);
  assert.equal(sha256(back), sha256(data));
});

test('byte integrity: all 256 byte values, and a zero-length connection', async (t) => {
  const relay = await startRelay(t, portsFlag());
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const socket = await dial(t, echo.publicPort);
  assert.deepEqual(await echoThrough(socket, every), every);

  const empty = await dial(t, echo.publicPort);
  empty.end();
  assert.equal((await readToEnd(empty)).length, 0);
});

test('many services: 3 echoservers get 3 distinct ports; 50 concurrent clients each get exactly their own bytes', async (t) => {
  const ports = portBlock();
  const relay = await startRelay(t, ['--ports', `${ports.first}-${ports.last}`]);
  const services = await Promise.all([1, 2, 3].map(() => startService(t, 'echoserver', ['127.0.0.1', String(relay.port)])));
  const publicPorts = services.map((service) => service.publicPort);
  assert.equal(new Set(publicPorts).size, 3);
  for (const port of publicPorts) assert.ok(port >= ports.first && port <= ports.last);

  const transfers = publicPorts.flatMap((port) =>
    Array.from({ length: 50 }, async () => {
      const data = randomData(16 * 1024 + Math.floor(Math.random() * 256 * 1024));
      const socket = await dial(t, port);
      const back = await echoThrough(socket, data, 8192, 60_000);
      assert.equal(sha256(back), sha256(data), `client of port ${port} got other bytes`);
    }),
  );
  await Promise.all(transfers);
});
