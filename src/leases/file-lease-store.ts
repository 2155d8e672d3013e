import { constants } from 'node:fs';
import { copyFile, link, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { systemClock, type Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { LeaseRecord, LeaseStore } from './lease-store.js';
import { temporaryBeside, writeNewFile } from './private-file.js';
import { formatState, parseState } from './state-format.js';
import { lockFileOf, StateLock } from './state-lock.js';
import { checkStatePath } from './state-path.js';

/** At most one warning per this many ms about a state file that cannot be written. */
const WRITE_WARNING_INTERVAL_MS = 10_000;

interface FileLeaseStoreOptions {
  file: string;
  /** Leases live when the relay stopped get this much grace again from the restart. */
  graceMs: number;
  log: Logger;
  clock?: Clock;
  /** Called for every failed write (a metric counts them). */
  onWriteError?: (err: NodeJS.ErrnoException) => void;
}

/**
 * Leases in a JSON file (`--state FILE`), replaced atomically: written to a temporary
 * file beside it (created exclusively, under a name nobody can guess), fsynced,
 * renamed over it, and the directory fsynced, so a crash at any moment leaves either
 * the old file or the new one. Saves that arrive while a write is in flight are
 * batched into the next write (one fsync for many registrations), and each save
 * resolves only once a write that includes it is done. Loading checks the path is
 * safe (state-path.ts) and takes the file's lock (state-lock.ts) first.
 */
export class FileLeaseStore implements LeaseStore {
  readonly #file: string;
  readonly #graceMs: number;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #onWriteError: (err: NodeJS.ErrnoException) => void;
  readonly #lock: StateLock;
  #current: () => LeaseRecord[] = () => [];
  #waiting: (() => void)[] = [];
  #writing: Promise<void> | undefined;
  #paused = false;
  #lastWarning = -Infinity;

  constructor(options: FileLeaseStoreOptions) {
    this.#file = options.file;
    this.#graceMs = options.graceMs;
    this.#log = options.log;
    this.#clock = options.clock ?? systemClock;
    this.#onWriteError = options.onWriteError ?? (() => {});
    this.#lock = new StateLock(options.file, options.log);
  }

  async load(): Promise<LeaseRecord[]> {
    await checkStatePath(this.#file, lockFileOf(this.#file));
    await this.#lock.acquire();
    const records = await this.#read();
    const now = this.#clock.now();
    // A lease live at the stop gets the whole grace from now: a reboot longer than the
    // grace must not cost a service its port. Reservations that ran out meanwhile are gone.
    const live = records
      // A file edited or written by a clock far ahead could hold a port for ever (and
      // overflow the reservation's timer): no reservation outlasts one grace from now.
      .map((record) => ({ ...record, until: record.until === null ? now + this.#graceMs : Math.min(record.until, now + this.#graceMs) }))
      .filter((record) => record.until > now);
    this.#log.info({ stateFile: this.#file, leases: live.length, dropped: records.length - live.length }, 'leases loaded');
    return live;
  }

  /** The valid leases in the file; a file that is unreadable or has invalid entries is kept aside first. */
  async #read(): Promise<LeaseRecord[]> {
    const stateFile = this.#file;
    let text: string;
    try {
      text = await readFile(stateFile, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        this.#log.info({ stateFile }, 'state file does not exist yet: starting with no leases');
        return [];
      }
      const keptAs = code === 'ENOTDIR' ? undefined : await this.#keepAside();
      this.#log.warn({ stateFile, keptAs }, `state file cannot be read (${code ?? String(err)}): starting with no leases`);
      return [];
    }
    const parsed = parseState(text);
    if (parsed === undefined) {
      const keptAs = await this.#keepAside();
      this.#log.warn({ stateFile, keptAs }, 'state file is empty or corrupt: starting with no leases');
      return [];
    }
    const dropped = Object.values(parsed.dropped).reduce((sum, count) => sum + count, 0);
    if (dropped > 0) {
      const keptAs = await this.#keepAside();
      this.#log.warn({ stateFile, keptAs, dropped, reasons: parsed.dropped, kept: parsed.records.length }, 'state file has invalid leases: those are dropped, the others kept');
    }
    return parsed.records;
  }

  /**
   * Copies the file the relay could not use fully to FILE.corrupt-<time>, so the
   * operator can see what was there. The file itself stays until a write replaces it
   * atomically: a crash or a failed write (a full disk) before then loses nothing. A
   * file the relay cannot read is linked instead (a link needs no read). Resolves with
   * the new name, or undefined if no copy could be made.
   */
  async #keepAside(): Promise<string | undefined> {
    const keptAs = `${this.#file}.corrupt-${new Date(this.#clock.now()).toISOString().replace(/:/g, '')}`;
    try {
      await copyFile(this.#file, keptAs, constants.COPYFILE_EXCL).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EACCES') throw err;
        await link(this.#file, keptAs);
      });
      return keptAs;
    } catch (err) {
      this.#log.warn({ stateFile: this.#file, err: (err as NodeJS.ErrnoException).code ?? String(err) }, 'cannot keep the unusable state file aside: the next write replaces it');
      return undefined;
    }
  }

  save(current: () => LeaseRecord[]): Promise<void> {
    this.#current = current;
    if (this.#paused) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#writeNext();
    });
  }

  async pause(): Promise<void> {
    this.#paused = true;
    await this.#writing;
  }

  resume(current: () => LeaseRecord[]): void {
    this.#paused = false;
    void this.#lock.reassert();
    void this.save(current);
  }

  #writeNext(): void {
    if (this.#writing !== undefined || this.#waiting.length === 0) return;
    const batch = this.#waiting;
    this.#waiting = [];
    this.#writing = this.#write(this.#current()).finally(() => {
      this.#writing = undefined;
      for (const resolve of batch) resolve();
      if (this.#paused) {
        for (const resolve of this.#waiting.splice(0)) resolve();
      } else {
        this.#writeNext();
      }
    });
  }

  async #write(records: LeaseRecord[]): Promise<void> {
    const temporary = temporaryBeside(this.#file);
    const text = formatState(records);
    try {
      await writeNewFile(temporary, text, true);
      await rename(temporary, this.#file);
      await syncDirectory(path.dirname(this.#file));
    } catch (err) {
      // Never remove what was there before us (EEXIST): it is not ours.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') await unlink(temporary).catch(() => {});
      this.#writeFailed(err as NodeJS.ErrnoException);
    }
  }

  #writeFailed(err: NodeJS.ErrnoException): void {
    this.#onWriteError(err);
    const now = this.#clock.now();
    if (now - this.#lastWarning < WRITE_WARNING_INTERVAL_MS) return;
    this.#lastWarning = now;
    this.#log.warn({ stateFile: this.#file, err: err.code ?? err.message }, 'cannot write the state file: leases will not survive a restart of the relay');
  }
}

/** The rename is durable only once the directory entry is; not every system lets a directory be fsynced. */
async function syncDirectory(directory: string): Promise<void> {
  try {
    const handle = await open(directory, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // best effort
  }
}
