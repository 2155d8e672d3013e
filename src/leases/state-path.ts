import type { Stats } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';

const WRITABLE_BY_OTHERS = 0o022;
const STICKY = 0o1000;

/**
 * Refuses a state file others could tamper with, before the relay reads or writes it:
 * in a directory writable by its group or by anyone without the sticky bit, anyone
 * could replace the file, or plant a link where it is written. A directory like /tmp
 * (sticky) is accepted, but there a state file or lock of another user is refused.
 * A directory that does not exist is left to the writes, which report it.
 */
export async function checkStatePath(file: string, lockFile: string): Promise<void> {
  const directory = path.dirname(file);
  const dir = await statOrUndefined(() => stat(directory));
  if (dir === undefined || !dir.isDirectory()) return;
  const mode = dir.mode & 0o7777;
  if ((mode & WRITABLE_BY_OTHERS) !== 0 && (mode & STICKY) === 0) {
    throw new UsageError(
      `--state ${file}: its directory ${directory} is writable by others (mode ${mode.toString(8).padStart(4, '0')}) without the sticky bit, so anyone could replace the leases: chmod go-w ${directory}, or use another directory`,
    );
  }
  const shared = (mode & WRITABLE_BY_OTHERS) !== 0;
  for (const [name, what] of [
    [file, '--state'],
    [lockFile, 'its lock'],
  ] as const) {
    const entry = await statOrUndefined(() => lstat(name));
    if (entry === undefined) continue;
    if (entry.isSymbolicLink()) throw new UsageError(`--state ${file}: ${what} ${name} is a symbolic link: name the file itself (the relay replaces the file, never what a link points to)`);
    if (!entry.isFile()) throw new UsageError(`--state ${file}: ${what} ${name} is not a regular file`);
    if (shared && entry.uid !== process.getuid?.())
      throw new UsageError(`--state ${file}: ${what} ${name} belongs to another user (uid ${entry.uid}) in a directory anyone can write: remove it, or use a private directory`);
  }
}

/** The entry's status, or undefined when there is nothing to check there. */
async function statOrUndefined(how: () => Promise<Stats>): Promise<Stats | undefined> {
  try {
    return await how();
  } catch {
    return undefined;
  }
}
