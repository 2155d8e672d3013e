import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { listenLocal, portsFlag } from '../helpers/net.js';
import { NO_ENV_SECRET, ROOT, start } from '../helpers/processes.js';
import { certDir, selfSignedCert } from '../helpers/tls.js';
import { requireTools } from '../helpers/tools.js';

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

function runProgram(program: string, args: string[], env: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(path.join(ROOT, program), args, { timeout: 10_000, env: { ...process.env, ...NO_ENV_SECRET, ...env } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const NOT_PEM = path.join(ROOT, 'package.json');

const usageCases: [string, string[], RegExp][] = [
  ['relay', ['99999'], /PORT must be a port number from 0 to 65535, got "99999"/],
  ['relay', ['http'], /PORT must be a port number/],
  ['relay', [], /missing argument: relay PORT/],
  ['relay', ['8080', '--bogus'], /Unknown argument: bogus/],
  ['relay', ['8080', '--ports', '9000'], /--ports must look like A-B/],
  ['relay', ['8080', '--ports', '9100-9000'], /--ports start 9100 is above its end 9000/],
  ['relay', ['8080', '--dialback-timeout', '-1'], /--dialback-timeout must be from 0.001 to 2147483 seconds, got "-1"/],
  ['relay', ['8080', '--heartbeat', '0.0001'], /--heartbeat must be from 0.01 to 3600 seconds/],
  // Above 2^31-1 ms Node's timers fire at once: every handshake would fail at once.
  ['relay', ['8080', '--handshake-timeout', '2147484'], /--handshake-timeout must be from 0.001 to 2147483 seconds, got "2147484"/],
  ['relay', ['8080', '--dialback-timeout', '3000000'], /--dialback-timeout must be from 0.001 to 2147483 seconds/],
  // Quoted as written, not as yargs would read the number.
  ['relay', ['8080', '--drain-timeout', '1e9'], /--drain-timeout must be from 0 to 2147483 seconds, got "1e9"/],
  ['relay', ['8080', '--max-services', '99999999999999999999'], /--max-services must be a whole number from 1 up, got "99999999999999999999"/],
  ['relay', ['8080', '--max-clients', 'lots'], /--max-clients must be a whole number from 1 up, got "lots"/],
  ['relay', ['8080', '--max-tunnels', '0'], /--max-tunnels must be a whole number from 1 up, got "0"/],
  ['relay', ['8080', '--config', '/nonexistent.json'], /^relay: cannot read --config \/nonexistent\.json: ENOENT/],
  ['relay', ['8080', '--resume-grace', 'Infinity'], /--resume-grace must be from 0 to 2147483 seconds/],
  ['relay', ['8080', '--max-services', '0'], /--max-services must be a whole number from 1 up, got "0"/],
  ['echoserver', ['localhost', '8080', '--drain-timeout', '3000000'], /--drain-timeout must be from 0 to 2147483 seconds/],
  ['echoserver', ['localhost', '8080', '--drain-timeout', 'soon'], /--drain-timeout must be from 0 to 2147483 seconds, got "soon"/],
  ['expose', ['localhost', '8080', '80', '--prewarm', '1001'], /--prewarm must be 'auto' or a whole number from 0 to 1000, got "1001"/],
  ['echoserver', ['localhost', '8080', '--prewarm', 'sometimes'], /--prewarm must be 'auto' or a whole number from 0 to 1000, got "sometimes"/],
  ['relay', ['8080', '--probe', '-1'], /--probe must be from 0 to 2147483 seconds, got "-1"/],
  ['relay', ['8080', '--public-host', 'relay/x'], /--public-host must be a host name or address/],
  ['relay', ['0'], /PORT 0 \(any free port\) needs --ports/],
  ['relay', ['8080', '--tls-cert', 'cert.pem'], /--tls-cert and --tls-key go together/],
  ['relay', ['8080', '--tls-cert', '/nonexistent.pem', '--tls-key', '/nonexistent.pem'], /cannot read --tls-cert \/nonexistent.pem: ENOENT/],
  ['relay', ['8080', '--tls-cert', NOT_PEM, '--tls-key', NOT_PEM], /--tls-cert \S+package\.json is not a PEM certificate \(/],
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

test('bad durations from the environment or a config file are refused like bad flags', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'relay-config-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'relay.json');
  await writeFile(config, JSON.stringify({ 'dialback-timeout': 5_000_000 }));
  for (const [program, args, env, expected] of [
    ['relay', ['8080'], { RELAY_HANDSHAKE_TIMEOUT: '9999999' }, /--handshake-timeout must be from 0.001 to 2147483 seconds, got "9999999"/],
    ['relay', ['8080', '--config', config], {}, /--dialback-timeout must be from 0.001 to 2147483 seconds, got "5000000"/],
    ['expose', ['localhost', '8080', '80'], { RELAY_DRAIN_TIMEOUT: '2147484' }, /--drain-timeout must be from 0 to 2147483 seconds/],
  ] as const) {
    const outcome = await runProgram(program, [...args], env);
    assert.equal(outcome.code, 2, outcome.stderr);
    assert.equal(outcome.stderr.trimEnd().split('\n').length, 1, outcome.stderr);
    assert.match(outcome.stderr, expected);
  }
});

test('a bad --config file is one line naming --config, the file and what is wrong with it, or the option and the value it holds', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'relay-config-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const [content, expected] of [
    ['{"max-clients":"lots"}', /--max-clients must be a whole number from 1 up, got "lots"/],
    ['{"max-warm":-1}', /--max-warm must be a whole number from 0 up, got "-1"/],
    ['{"ports":', /--config \S+relay\.json is not JSON \(/],
    ['[{"ports":"9000-9099"}]', /--config \S+relay\.json must hold one JSON object of options \(keys as the long flags\), got an array/],
    ['{"no-such-option":1}', /Unknown arguments?: no-such-option/],
  ] as const) {
    const config = path.join(dir, 'relay.json');
    await writeFile(config, content);
    const outcome = await runProgram('relay', ['8080', '--config', config]);
    assert.equal(outcome.code, 2, outcome.stderr);
    assert.equal(outcome.stderr.trimEnd().split('\n').length, 1, outcome.stderr);
    assert.match(outcome.stderr, expected);
    assert.doesNotMatch(outcome.stderr, /Invalid JSON config file/);
  }
});

test('client limits above what the machine can hold are lowered to it, with one warning quoting what was written', async (t) => {
  // Under ulimit -n 1024 (hard too, so Node cannot raise it) the relay can hold 448 tunnels.
  const args = [...portsFlag(), '--max-clients', '1e12', '--max-pending', '99999999999999999999', '--max-tunnels', '100'];
  const relay = start(t, 'bash', ['-c', 'ulimit -n 1024; exec ./relay 0 "$@"', 'relay', ...args], NO_ENV_SECRET);
  const line = await relay.waitFor('stderr', /"msg":"client limits"/);
  const record = JSON.parse(line.input!) as Record<string, unknown>;
  assert.deepEqual([record['maxClientsPerService'], record['maxPendingPerService'], record['maxTunnels']], [448, 448, 100]);
  const warnings = relay.stderr.filter((text) => text.includes('above what this machine can hold'));
  assert.equal(warnings.length, 1, relay.stderr.join('\n'));
  const warning = JSON.parse(warnings[0]!) as Record<string, unknown>;
  assert.equal(warning['level'], 40);
  assert.equal(
    warning['msg'],
    '--max-clients 1e12 and --max-pending 99999999999999999999 are above what this machine can hold (derived from open-file limit 1024): using 448 and 448 instead; raise the open-file limit (ulimit -n) or the memory limit to allow more',
  );
});

test('bad command line: a --tls-key that is not PEM, or not the key of --tls-cert, is a usage error naming the file', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const dir = await certDir(t);
  const a = await selfSignedCert(dir, 'a-');
  const b = await selfSignedCert(dir, 'b-');
  for (const [key, expected] of [
    [NOT_PEM, /--tls-key \S+package\.json is not an unencrypted PEM private key/],
    [b.key, /--tls-key \S+b-key\.pem does not go with --tls-cert \S+a-cert\.pem/],
  ] as const) {
    const outcome = await runProgram('relay', ['8080', '--tls-cert', a.cert, '--tls-key', key]);
    assert.equal(outcome.code, 2, outcome.stderr);
    assert.equal(outcome.stderr.trimEnd().split('\n').length, 1, outcome.stderr);
    assert.match(outcome.stderr, expected);
  }
});

for (const program of ['relay', 'echoserver', 'expose']) {
  test(`--help: ${program} prints usage with examples and exits 0`, async () => {
    const outcome = await runProgram(program, ['--help']);
    assert.equal(outcome.code, 0);
    assert.match(outcome.stdout, /Examples:/);
    assert.match(outcome.stdout, new RegExp(`${program} `));
  });
}

const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };

for (const [program, args] of [
  ['relay', ['--version']],
  ['relay', ['8080', '--version']],
  ['relay', ['status', '--version']],
  ['echoserver', ['--version']],
  ['expose', ['localhost', '8080', '--version']],
] as const) {
  test(`--version: ${program} ${args.join(' ')} prints the package's version and exits 0`, async () => {
    const outcome = await runProgram(program, [...args]);
    assert.deepEqual(outcome, { code: 0, stdout: `${version}\n`, stderr: '' });
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
  const outcome = await new Promise<Outcome>((resolve) => execFile('sh', [path.join(dir, 'relay'), '8080'], (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr })));
  assert.equal(outcome.code, 1);
  assert.match(outcome.stderr, /not built yet; run 'npm ci && npm run build'/);
});
