import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { dial, echoThrough, listenLocal, portsFlag, randomData, readToEnd, sha256 } from '../helpers/net.js';
import { ROOT, start, startRelay, startService } from '../helpers/processes.js';
import { requireTools } from '../helpers/tools.js';

const run = promisify(execFile);

// What a clean clone holds: everything but build output, installed modules and local debris.
const NOT_IN_A_CLONE = new Set(['node_modules', 'dist', '.git', 'bench-results']);

/** The environment npm sees as a user runs it, not as a child of `npm test` (whose npm_* variables would steer it). */
const userEnv = (): NodeJS.ProcessEnv => Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')));

/** npm as a user runs it; its stderr (warnings) is kept for the checks. */
async function npmRun(cwd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run('npm', args, { cwd, env: userEnv(), timeout: 90_000 });
}

async function npm(cwd: string, args: string[]): Promise<string> {
  return (await npmRun(cwd, args)).stdout;
}

/** npx as a user runs it, with its exit code rather than a rejection. */
function npx(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('npx', ['--yes', '--prefer-offline', ...args], { cwd, env: userEnv(), timeout: 90_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

interface Installed {
  /** The project the tarball was installed into. */
  app: string;
  tarball: string;
  /** What `npm install` of the tarball wrote on stderr. */
  installWarnings: string;
}

/** Packs a copy of the checkout without dist/ and installs the tarball into an empty project. */
async function installPackedCopy(t: TestContext): Promise<Installed> {
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
  for (const needed of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/relay.js', 'relay', 'echoserver', 'expose', 'tcp-relay', 'README.md', 'LICENSE']) {
    assert.ok(files.includes(needed), `the package holds ${needed}`);
  }
  for (const file of files) assert.doesNotMatch(file, /^(src|test|scripts|dist\/test|dist\/scripts)\/|\.map$/, `the package holds only what runs: ${file}`);

  const app = path.join(dir, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'relay-consumer', private: true, type: 'module' }));
  // The runtime dependencies come from the registry, or npm's cache when it has them.
  const tarball = path.join(dir, packed.filename);
  const { stderr } = await npmRun(app, ['install', tarball, '--no-audit', '--no-fund', '--prefer-offline']);
  return { app, tarball, installWarnings: stderr };
}

test('package: a packed clean clone installs into an empty project, whose listenViaRelay and relay, echoserver and expose bins work', async (t) => {
  if (!requireTools(t, 'npm')) return;
  const { app, installWarnings } = await installPackedCopy(t);
  const bin = path.join(app, 'node_modules', '.bin');
  // The tarball ships its build: nothing to run at install, so npm has no script to warn of.
  assert.doesNotMatch(installWarnings, /install-scripts|prepare/, installWarnings);

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

test('package: the tarball ships the MIT license and runs under npx, by program name or with --package; a bare npx says what to name', async (t) => {
  if (!requireTools(t, 'npm')) return;
  const { app, tarball } = await installPackedCopy(t);
  const license = readFileSync(path.join(app, 'node_modules', 'tcp-relay', 'LICENSE'), 'utf8');
  assert.match(license, /^MIT License\n\nCopyright \(c\) 2026 tcp-relay contributors\n/);
  const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };

  // As the docs say to write it: ./NAME.tgz or file:PATH (npm runs a bare absolute path as a command).
  const dir = path.dirname(tarball);
  const relative = `./${path.basename(tarball)}`;
  const bare = await npx(dir, [relative]);
  assert.equal(bare.code, 2, bare.stderr);
  assert.match(bare.stderr, /tcp-relay: name the program to run: relay, echoserver or expose/);
  const unknown = await npx(dir, [relative, 'relays']);
  assert.equal(unknown.code, 2, unknown.stderr);
  assert.match(unknown.stderr, /tcp-relay: unknown program "relays"/);
  for (const args of [
    [relative, 'relay', '--version'],
    [`file:${tarball}`, 'expose', '--version'],
    ['--package', tarball, 'relay', '--version'],
    ['--package', relative, 'echoserver', '--version'],
  ]) {
    const outcome = await npx(dir, args);
    assert.deepEqual([outcome.code, outcome.stdout], [0, `${version}\n`], `npx ${args.join(' ')}: ${outcome.stderr}`);
  }

  // And a relay started that way serves (npx as a user runs it: no npm_* variables).
  const unsetNpm = 'for v in $(env | sed -n "s/^\\([Nn][Pp][Mm]_[A-Za-z0-9_]*\\)=.*/\\1/p"); do unset "$v"; done';
  const relay = start(t, 'sh', ['-c', `${unsetNpm}; cd "$1" && shift && exec npx --yes --prefer-offline "$@"`, 'sh', dir, relative, 'relay', '0', ...portsFlag()]);
  const [, port] = await relay.waitFor('stderr', /"controlPort":(\d+)/, 60_000);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', port!], {}, path.join(app, 'node_modules', '.bin'));
  const data = randomData(64 * 1024);
  assert.equal(sha256(await echoThrough(await dial(t, echo.publicPort), data)), sha256(data));
});
