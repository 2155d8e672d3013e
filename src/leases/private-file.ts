import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';

/**
 * A name beside `file` nobody can guess (`FILE.<16 hex>.tmp`), so nobody can plant a
 * symlink or a file there in advance.
 */
export function temporaryBeside(file: string): string {
  return `${file}.${randomBytes(8).toString('hex')}.tmp`;
}

/**
 * Writes `text` to a file that must not exist yet, readable by its owner only.
 * Exclusive creation (O_EXCL) fails on anything already at the path, a symlink
 * included, so nothing planted there is ever written through or keeps its mode.
 * Rejects with EEXIST when something is there (then nothing of it was touched).
 */
export async function writeNewFile(file: string, text: string, durable: boolean): Promise<void> {
  const handle = await open(file, 'wx', 0o600);
  try {
    await handle.writeFile(text);
    if (durable) await handle.sync();
  } finally {
    await handle.close();
  }
}
