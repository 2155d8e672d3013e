import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { dial, echoThrough, listenLocal, portsFlag, randomData, readToEnd, sha256 } from '../helpers/net.js';
import { ROOT, start, startRelay, startService } from '../helpers/processes.js';
import { requireTools } from '../helpers/tools.js';

const run = promisify(execFile);

// What a clean clone holds: everything but build output, installed modules and local debris.
const NOT_IN_A_CLONE = new Set(['node_modules', 'dist', '.git', 'bench-results']);

/** npm as a user runs it, not as a child of `npm test` (whose npm_* variables would steer it). */
async function npm(cwd: string, args: string[]): Promise<string> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')));
  const { stdout } = await run('npm', args, { cwd, env, timeout: 90_000 });
  return stdout;
}

/** Packs a copy of the checkout without dist/ and installs the tarball into an empty project; returns that project. */
async function installPackedCopy(t: TestContext): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-pack-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const clone = path.join(dir, 'clone');
  cpSync(ROOT, clone, {
    recursive: true,
    filter: (source) => {
      const top = path.relative(ROOT, source).split(path.sep)[0] ?? '';
      return !NOT_IN_A_CLONE.has(top) && !top.endsWith('.tgz');
    },
  });
  // The build needs the dev dependencies (TypeScript); link them rather than download them again.
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(clone, 'node_modules'));

  const [packed] = JSON.parse(await npm(clone, ['pack', '--json', '--pack-destination', dir])) as { filename: string; files: { path: string }[] }[];
  assert.ok(packed, 'npm pack describes the tarball it made');
  const files = packed.files.map((file) => file.path);
  for (const needed of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/relay.js', 'relay', 'echoserver', 'expose', 'README.md']) {
    assert.ok(files.includes(needed), `the package holds ${needed}`);
  }
  for (const file of files) assert.doesNotMatch(file, /^(src|test|scripts|dist\/test|dist\/scripts)\/|\.map$/, `the package holds only what runs: ${file}`);

  const app = path.join(dir, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'relay-consumer', private: true, type: 'module' }));
  // The runtime dependencies come from the registry, or npm's cache when it has them.
  await npm(app, ['install', path.join(dir, packed.filename), '--no-audit', '--no-fund', '--prefer-offline']);
  return app;
}

test('package: a packed clean clone installs into an empty project, whose listenViaRelay and relay, echoserver and expose bins work', async (t) => {
  if (!requireTools(t, 'npm')) return;
  const app = await installPackedCopy(t);
  const bin = path.join(app, 'node_modules', '.bin');

  const relay = await startRelay(t, portsFlag(), {}, bin);

  // The library, imported by its package name as a user's program does.
  writeFileSync(
    path.join(app, 'server.js'),
    `import { createServer } from 'node:http';
import { listenViaRelay } from 'tcp-relay';
const server = createServer((req, res) => res.end('installed package serves ' + req.url));
listenViaRelay(server, { host: '127.0.0.1', port: Number(process.argv[2]) }).on('established', ({ address }) => console.log('reachable at ' + address));
`,
  );
  const server = start(t, process.execPath, [path.join(app, 'server.js'), String(relay.port)]);
  const [, address] = await server.waitFor('stdout', /^reachable at (\S+)$/);
  const response = await fetch(`http://${address}/hello`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(await response.text(), 'installed package serves /hello');

  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], {}, bin);
  const data = randomData(256 * 1024);
  assert.equal(sha256(await echoThrough(await dial(t, echo.publicPort), data)), sha256(data));

  const target = await listenLocal(t, (socket) => socket.end('exposed target says hi'));
  const expose = await startService(t, 'expose', ['127.0.0.1', String(relay.port), String(target.port)], {}, bin);
  const client = await dial(t, expose.publicPort);
  client.end();
  assert.equal((await readToEnd(client)).toString(), 'exposed target says hi');
});
