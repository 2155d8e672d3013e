import cluster from 'node:cluster';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, readFile, rename, unlink } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { temporaryBeside, writeNewFile } from './private-file.js';

/**
 * Who holds a lock: the relay (the pid to signal) and the worker that took it, and where
 * known the boot it ran in and the relay's start time, so a pid reused after a reboot or
 * by another process is not taken for the relay.
 */
interface Holder {
  relay: number;
  worker: number;
  boot: string | undefined;
  start: string | undefined;
}

const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

/**
 * The relay this process is: in a worker of ./relay its master (a restarted worker, or
 * the new worker of an upgrade, is the same relay), else the process itself.
 */
function me(): Holder {
  const relay = cluster.isWorker ? process.ppid : process.pid;
  return { relay, worker: process.pid, boot: bootId(), start: startTime(relay) };
}

/** This boot's id (Linux); undefined where the system has none. */
function bootId(): string | undefined {
  return readOptional(BOOT_ID_FILE);
}

/** When the process started, in clock ticks since the boot (field 22 of /proc/PID/stat); undefined where unreadable. */
function startTime(pid: number): string | undefined {
  const stat = readOptional(`/proc/${pid}/stat`);
  // Fields 3 on follow the command name, which is in parentheses and may hold spaces.
  const start = stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  return start !== undefined && /^[0-9]+$/.test(start) ? start : undefined;
}

function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * `FILE.lock` beside a state file, so two relays never share one (each would replace
 * the other's leases). It holds the relay's pid (the master's: what --pid-file holds),
 * the worker's, and where known the boot id and the relay's start time. A lock of a
 * relay that is no longer running is taken over (a lock from another boot, or whose
 * pid now names a process started at another time, too; one with the pids alone is
 * judged by the pid); the worker that holds it removes it when it exits cleanly, unless a
 * newer worker of the same relay (an upgrade) has taken it since. It guards relays
 * that see each other's pids: one host, one pid namespace.
 */
export class StateLock {
  readonly #stateFile: string;
  readonly #lockFile: string;
  readonly #log: Logger;
  #held = false;

  constructor(stateFile: string, log: Logger) {
    this.#stateFile = stateFile;
    this.#lockFile = lockFileOf(stateFile);
    this.#log = log;
  }

  /** Takes the lock, or rejects with a UsageError naming the relay that holds it. */
  async acquire(): Promise<void> {
    const mine = me();
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        if (await this.#create(mine)) return this.#hold();
        const holder = await readHolder(this.#lockFile);
        if (holder === 'gone') continue;
        if (holder !== undefined && holder.relay !== mine.relay && isRunning(holder)) {
          throw new UsageError(`--state ${this.#stateFile} is in use by another relay (pid ${holder.relay}, in ${this.#lockFile}): stop it, or give each relay its own --state file`);
        }
        // Ours (a restarted worker, or an upgrade's new one), or a relay that died.
        if (holder === undefined || holder.relay !== mine.relay) {
          this.#log.warn({ stateFile: this.#stateFile, lockFile: this.#lockFile, pid: holder?.relay ?? null }, 'taking over the lock of a relay that is no longer running');
        }
        await this.#replace(mine);
        const now = await readHolder(this.#lockFile);
        if (now !== 'gone' && now?.relay === mine.relay && now.worker === mine.worker) return this.#hold();
      }
    } catch (err) {
      if (err instanceof UsageError) throw err;
      // The writes of the state file will fail as well, and say so.
      this.#log.warn({ stateFile: this.#stateFile, err: (err as NodeJS.ErrnoException).code ?? String(err) }, 'cannot lock the state file: another relay using it would not be noticed');
      return;
    }
    throw new UsageError(`--state ${this.#stateFile}: its lock ${this.#lockFile} keeps changing hands: is another relay starting on it?`);
  }

  /** After an upgrade was called off: the worker that keeps serving holds the lock again. */
  async reassert(): Promise<void> {
    if (!this.#held) return;
    const holder = await readHolder(this.#lockFile).catch(() => undefined);
    const mine = me();
    if (holder === 'gone' || (holder?.relay === mine.relay && holder.worker !== mine.worker)) await this.#replace(mine).catch(() => {});
  }

  /** Puts a complete lock in place only if there is none: a link fails where anything is. */
  async #create(mine: Holder): Promise<boolean> {
    const temporary = temporaryBeside(this.#lockFile);
    await writeNewFile(temporary, lockText(mine), false);
    try {
      await link(temporary, this.#lockFile);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    } finally {
      await unlink(temporary).catch(() => {});
    }
  }

  async #replace(mine: Holder): Promise<void> {
    const temporary = temporaryBeside(this.#lockFile);
    try {
      await writeNewFile(temporary, lockText(mine), false);
      await rename(temporary, this.#lockFile);
    } catch (err) {
      await unlink(temporary).catch(() => {});
      throw err;
    }
  }

  #hold(): void {
    this.#held = true;
    releaseAtExit(this.#lockFile);
  }
}

export function lockFileOf(stateFile: string): string {
  return `${stateFile}.lock`;
}

/** One value a line; the boot id and start time only where known (a line left empty when only the start time is). */
function lockText(holder: Holder): string {
  const lines = [String(holder.relay), String(holder.worker), holder.boot ?? '', holder.start ?? ''];
  while (lines.at(-1) === '') lines.pop();
  return `${lines.join('\n')}\n`;
}

/** The lock's holder; undefined when the file holds no pids; 'gone' when there is no lock. */
async function readHolder(lockFile: string): Promise<Holder | undefined | 'gone'> {
  let text: string;
  try {
    text = await readFile(lockFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw err;
  }
  return parseHolder(text);
}

function parseHolder(text: string): Holder | undefined {
  const lines = text.split('\n').map((line) => line.trim());
  const [relay, worker] = lines.slice(0, 2).map(Number);
  if (!Number.isInteger(relay) || (relay as number) <= 0) return undefined;
  return { relay: relay as number, worker: Number.isInteger(worker) ? (worker as number) : 0, boot: lines[2] || undefined, start: lines[3] || undefined };
}

/**
 * Whether the relay that holds the lock still runs: its pid exists (signal 0 checks
 * without sending anything), in this boot, and was started when the lock says.
 */
function isRunning(holder: Holder): boolean {
  try {
    process.kill(holder.relay, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const boot = bootId();
  if (holder.boot !== undefined && boot !== undefined && holder.boot !== boot) return false;
  const start = holder.start === undefined ? undefined : startTime(holder.relay);
  return start === undefined || start === holder.start;
}

const heldHere = new Set<string>();

/**
 * A clean exit (code 0: a stop, or an old worker done after an upgrade) leaves no lock
 * behind; the lock stays where a newer worker of the relay holds it. A crash leaves it,
 * for the restarted worker or, once the relay is gone, for the next start to take over.
 */
function releaseAtExit(lockFile: string): void {
  if (heldHere.size === 0) {
    process.on('exit', (code) => {
      if (code !== 0) return;
      for (const file of heldHere) {
        try {
          const holder = parseHolder(readFileSync(file, 'utf8'));
          const mine = me();
          if (holder?.relay === mine.relay && holder.worker === mine.worker) unlinkSync(file);
        } catch {
          // gone already
        }
      }
    });
  }
  heldHere.add(lockFile);
}
