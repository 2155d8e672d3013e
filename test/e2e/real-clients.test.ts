import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, portsFlag, randomData, sha256 } from '../helpers/net.js';
import { start, startRelay, startService } from '../helpers/processes.js';
import { certFiles } from '../helpers/tls.js';
import { requireTools } from '../helpers/tools.js';

const run = promisify(execFile);

async function scratchDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'relay-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('real clients: curl through ./expose fetches a file from python3 -m http.server intact', async (t) => {
  if (!requireTools(t, 'python3', 'curl')) return;
  const dir = await scratchDir(t);
  const body = randomData(3 * 1024 * 1024);
  await writeFile(path.join(dir, 'blob.bin'), body);
  const httpPort = await freePort();
  const http = start(t, 'python3', ['-u', '-m', 'http.server', String(httpPort), '--bind', '127.0.0.1', '--directory', dir]);
  await http.waitFor('stdout', /Serving HTTP/);

  const relay = await startRelay(t, portsFlag());
  const expose = await startService(t, 'expose', ['localhost', String(relay.port), `127.0.0.1:${httpPort}`]);
  const out = path.join(dir, 'fetched.bin');
  const { stdout } = await run('curl', ['-sS', '--max-time', '20', '-o', out, '-w', '%{http_code}', `http://127.0.0.1:${expose.publicPort}/blob.bin`]);
  assert.equal(stdout, '200');
  assert.equal(sha256(await readFile(out)), sha256(body));
});

test('real clients: openssl s_client through ./expose completes a TLS handshake with openssl s_server', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const { cert, key } = await certFiles(t);
  const tlsPort = await freePort();
  const server = start(t, 'openssl', ['s_server', '-accept', String(tlsPort), '-cert', cert, '-key', key, '-www', '-naccept', '1']);
  await server.waitFor('stdout', /ACCEPT/);

  const relay = await startRelay(t, portsFlag());
  const expose = await startService(t, 'expose', ['localhost', String(relay.port), `127.0.0.1:${tlsPort}`]);
  const client = start(t, 'sh', ['-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | openssl s_client -connect 127.0.0.1:${expose.publicPort} -servername localhost -quiet -ign_eof`]);
  await client.waitFor('stdout', /HTTP\/1\.0 200 ok/i, 15_000);
  await client.waitFor('stdout', /Ciphers supported|New, TLS/i, 15_000);
  const { code } = await client.exited;
  assert.equal(code, 0);
});

test('real clients: nc sends a file to the echo tunnel and reads it back unchanged', async (t) => {
  if (!requireTools(t, 'nc')) return;
  const dir = await scratchDir(t);
  const file = path.join(dir, 'in.bin');
  const data = randomData(2 * 1024 * 1024);
  await writeFile(file, data);
  const relay = await startRelay(t, portsFlag());
  const echo = await startService(t, 'echoserver', ['localhost', String(relay.port)]);
  const { stdout } = await run('sh', ['-c', `nc -N 127.0.0.1 ${echo.publicPort} < '${file}' | sha256sum`], { timeout: 20_000 });
  assert.equal(stdout.split(' ')[0], sha256(data));
});
