import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { listenLocal } from '../helpers/net.js';
import { ROOT } from '../helpers/processes.js';

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

function runProgram(program: string, args: string[]): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(path.join(ROOT, program), args, { timeout: 10_000, env: { ...process.env, RELAY_SECRET: '' } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const usageCases: [string, string[], RegExp][] = [
  ['relay', ['99999'], /PORT must be a port number from 0 to 65535, got "99999"/],
  ['relay', ['http'], /PORT must be a port number/],
  ['relay', [], /missing argument: relay PORT/],
  ['relay', ['8080', '--bogus'], /Unknown argument: bogus/],
  ['relay', ['8080', '--ports', '9000'], /--ports must look like A-B/],
  ['relay', ['8080', '--ports', '9100-9000'], /--ports start 9100 is above its end 9000/],
  ['relay', ['8080', '--dialback-timeout', '-1'], /--dialback-timeout must be a positive number/],
  ['relay', ['8080', '--heartbeat', '0.0001'], /--heartbeat must be from 0.01 to 3600 seconds/],
  ['relay', ['8080', '--probe', '-1'], /--probe \(0 = off\) must be a positive number, got "-1"/],
  ['relay', ['8080', '--public-host', 'relay/x'], /--public-host must be a host name or address/],
  ['relay', ['0'], /PORT 0 \(any free port\) needs --ports/],
  ['relay', ['8080', '--tls-cert', 'cert.pem'], /--tls-cert and --tls-key go together/],
  ['relay', ['8080', '--tls-cert', '/nonexistent.pem', '--tls-key', '/nonexistent.pem'], /cannot read --tls-cert \/nonexistent.pem: ENOENT/],
  ['relay', ['8080', '--metrics', 'x:y:z'], /--metrics must be/],
  ['expose', ['localhost', '8080', '80', '--proxy-protocol', 'v3'], /Invalid values/],
  ['echoserver', ['localhost'], /missing argument: echoserver RELAYHOST RELAYPORT/],
  ['echoserver', ['localhost', '0'], /RELAYPORT must be a port number from 1 to 65535/],
  ['expose', ['localhost', '8080'], /missing argument: expose RELAYHOST RELAYPORT TARGET/],
  ['expose', ['localhost', '8080', 'nowhere'], /TARGET must be PORT or HOST:PORT/],
  ['expose', ['localhost', '8080', '70000'], /TARGET must be a port number/],
];

for (const [program, args, expected] of usageCases) {
  test(`bad command line: ${program} ${args.join(' ')} is one line on stderr and exit 2`, async () => {
    const outcome = await runProgram(program, args);
    assert.equal(outcome.code, 2);
    assert.equal(outcome.stdout, '');
    const lines = outcome.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `expected one line, got:\n${outcome.stderr}`);
    assert.match(lines[0]!, expected);
    assert.doesNotMatch(outcome.stderr, /\n\s+at /, 'no stack trace');
  });
}

for (const program of ['relay', 'echoserver', 'expose']) {
  test(`--help: ${program} prints usage with examples and exits 0`, async () => {
    const outcome = await runProgram(program, ['--help']);
    assert.equal(outcome.code, 0);
    assert.match(outcome.stdout, /Examples:/);
    assert.match(outcome.stdout, new RegExp(`${program} `));
  });
}

test('relay on a port that is taken says so and exits 1', async (t) => {
  const { port } = await listenLocal(t, () => {});
  const outcome = await runProgram('relay', [String(port), '--bind', '127.0.0.1']);
  assert.equal(outcome.code, 1);
  assert.match(outcome.stderr, new RegExp(`relay: port ${port} is already in use`));
});

test('a launcher run before the build says what to run', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'relay-launcher-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await copyFile(path.join(ROOT, 'relay'), path.join(dir, 'relay'));
  const outcome = await new Promise<Outcome>((resolve) =>
    execFile('sh', [path.join(dir, 'relay'), '8080'], (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr })),
  );
  assert.equal(outcome.code, 1);
  assert.match(outcome.stderr, /not built yet; run 'npm ci && npm run build'/);
});
