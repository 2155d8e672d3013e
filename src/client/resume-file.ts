import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { UsageError } from '../errors.js';

/** What a resume key looks like: 128 bits in lowercase hex. */
export const RESUME_KEY = /^[0-9a-f]{32}$/;

/**
 * The service's resume key from FILE, created on first use (a fresh 128-bit key,
 * mode 0600: it is a bearer credential for the public port). The key, not the
 * process, owns the port, so a restarted process with the same file gets it back.
 * A pool file (`kind` 'pool') holds a pool key, made and kept by the same rules.
 */
export function loadResumeKey(file: string, kind: 'resume' | 'pool' = 'resume'): string {
  try {
    const text = readFileSync(file, 'utf8').trim();
    if (!RESUME_KEY.test(text)) throw new UsageError(`${kind} file ${file} does not hold a ${kind} key (32 hex digits); remove it to start afresh`);
    return text;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new UsageError(`cannot read ${kind} file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  const key = randomBytes(16).toString('hex');
  try {
    // 'wx': two processes starting at once must not both create a key; the loser reads the winner's.
    writeFileSync(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadResumeKey(file, kind);
    throw new UsageError(`cannot create ${kind} file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}
