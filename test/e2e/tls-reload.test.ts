import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { connect } from 'node:tls';
import { assertEchoes, assertNewClientEchoes } from '../helpers/echo.js';
import { dial, deadline, portsFlag } from '../helpers/net.js';
import { startRelay, startService } from '../helpers/processes.js';
import { certDir, selfSignedCert } from '../helpers/tls.js';
import { requireTools } from '../helpers/tools.js';

/** The SHA-256 fingerprint of the certificate a new TLS connection to the relay's control port is given, trusting `ca`. */
async function servedFingerprint(t: TestContext, port: number, ca: Buffer): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect', { signal: deadline(5000) });
  const fingerprint = socket.getPeerCertificate().fingerprint256;
  socket.destroy();
  return fingerprint;
}

const fingerprintOf = async (file: string): Promise<string> => new X509Certificate(await readFile(file)).fingerprint256;

test('TLS reload: SIGHUP serves the new --tls-cert to new connections, open ones and old registrations keep working, a broken pair keeps the current one', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const dir = await certDir(t);
  const a = await selfSignedCert(dir, 'a-');
  const b = await selfSignedCert(dir, 'b-');
  // The files the relay is given, later overwritten as a renewal would.
  const served = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  await copyFile(a.cert, served.cert);
  await copyFile(a.key, served.key);
  const relay = await startRelay(t, [...portsFlag(), '--tls-cert', served.cert, '--tls-key', served.key]);
  const old = await startService(t, 'echoserver', ['localhost', String(relay.port), '--ca', a.cert]);
  const before = await dial(t, old.publicPort);
  await assertEchoes(before, 'a tunnel opened before the reload\n');

  await copyFile(b.cert, served.cert);
  await copyFile(b.key, served.key);
  relay.signal('SIGHUP');
  await relay.waitFor('stderr', /SIGHUP: TLS certificate reloaded; new connections get it/);
  assert.equal(await servedFingerprint(t, relay.port, await readFile(b.cert)), await fingerprintOf(b.cert));
  const renewed = await startService(t, 'echoserver', ['localhost', String(relay.port), '--ca', b.cert]);
  await assertNewClientEchoes(t, renewed.publicPort, 'a service that trusts the new certificate\n');
  // The old service's control connection, its open tunnel and its next clients (whose
  // dial-backs resume the session it verified) are not disturbed.
  await assertEchoes(before, 'the same tunnel after the reload\n');
  await assertNewClientEchoes(t, old.publicPort, 'a new client of the old registration\n');
  assert.ok(!old.stderr.some((line) => line.includes('lost the relay')), old.stderr.join('\n'));

  // A file that is not a certificate, then a certificate with the wrong key (a renewal
  // caught between its two writes): one error line each, and B is still served.
  for (const [write, problem] of [
    [() => writeFile(served.cert, 'not a certificate\n'), /--tls-cert \S+cert\.pem is not a PEM certificate/],
    [() => copyFile(a.cert, served.cert), /--tls-key \S+key\.pem does not go with --tls-cert \S+cert\.pem/],
  ] as const) {
    await write();
    const from = relay.stderr.length;
    relay.signal('SIGHUP');
    const { input: line = '' } = await relay.waitFor('stderr', /SIGHUP: TLS certificate not reloaded; still serving the previous one/, 10_000, from);
    assert.match(line, problem);
    assert.match(line, /"level":50/);
    assert.equal(await servedFingerprint(t, relay.port, await readFile(b.cert)), await fingerprintOf(b.cert));
  }
  await assertNewClientEchoes(t, renewed.publicPort, 'still served after the failed reloads\n');
});
