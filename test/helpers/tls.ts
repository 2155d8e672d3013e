import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A self-signed certificate for localhost in `dir`, as `${prefix}cert.pem` and
 * `${prefix}key.pem` (a prefix for more than one pair in a directory). Needs openssl:
 * check with requireTools first.
 */
export async function selfSignedCert(dir: string, prefix = ''): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, `${prefix}cert.pem`);
  const key = path.join(dir, `${prefix}key.pem`);
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost']);
  return { cert, key };
}

/** A directory for certificates, removed when the test ends. */
export async function certDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'relay-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A self-signed certificate for localhost as files, in a directory removed when the test ends. */
export async function certFiles(t: TestContext): Promise<{ cert: string; key: string }> {
  return selfSignedCert(await certDir(t));
}

/** A self-signed certificate for localhost as PEM, for TLS options (the in-process relay, a tls.Server, a client's ca). */
export async function certPem(t: TestContext): Promise<{ cert: Buffer; key: Buffer }> {
  const files = await certFiles(t);
  const [cert, key] = await Promise.all([readFile(files.cert), readFile(files.key)]);
  return { cert, key };
}
