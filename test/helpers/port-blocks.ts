import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

// Public port blocks are claimed across the test processes that `node --test` runs side
// by side: a random pick alone let two files take one block now and then, and a test
// that expects a port of its block (a names port, a restart on the same port) then found
// it bound by another file's relay. A claim is a file named after the block, holding the
// claimer's pid; a claim whose process is gone is free again.

const FIRST = 10_000;
// Below Linux's ephemeral range (32768 and up), where the outgoing connections of tests
// running beside this one would take a public port for a moment; and below 26000, where
// the fleet tests' blocks start (test/helpers/fleet.ts): a relay of another test binds its
// ports on every address, so a block shared with a fleet on 127.0.0.N would leave that
// fleet no free port.
const UNITS = 160;
const UNIT = 100;
const CLAIMS = path.join(tmpdir(), 'tcp-relay-test-port-blocks');

const mine: number[] = [];
let released = false;

function claimFile(unit: number): string {
  return path.join(CLAIMS, String(FIRST + unit * UNIT));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function claimUnit(unit: number): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(claimFile(unit), String(process.pid), { flag: 'wx' });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let holder = Number.NaN;
    try {
      holder = Number(readFileSync(claimFile(unit), 'utf8'));
    } catch {
      continue; // released between our write and our read: try again
    }
    // A half-written claim reads as NaN and counts as held: its writer is alive.
    if (!Number.isInteger(holder) || holder === 0 || alive(holder)) return false;
    try {
      unlinkSync(claimFile(unit));
    } catch {
      // another process took the stale claim away first; the retry decides
    }
  }
  return false;
}

function claimRun(start: number, units: number): boolean {
  for (let i = 0; i < units; i++) {
    if (claimUnit(start + i)) continue;
    for (let j = 0; j < i; j++) unlinkSync(claimFile(start + j));
    return false;
  }
  for (let i = 0; i < units; i++) mine.push(start + i);
  return true;
}

function releaseAll(): void {
  if (released) return;
  released = true;
  for (const unit of mine) {
    try {
      unlinkSync(claimFile(unit));
    } catch {
      // already gone
    }
  }
}

process.on('exit', releaseAll);

/** A block of public ports for one test, claimed so that no other test process running beside this one gets it. */
export function portBlock(size = 100): { first: number; last: number } {
  const units = Math.ceil(size / UNIT);
  const starts = UNITS - units + 1;
  mkdirSync(CLAIMS, { recursive: true });
  const offset = Math.floor(Math.random() * starts);
  for (let i = 0; i < starts; i++) {
    const start = (offset + i) % starts;
    if (claimRun(start, units)) return { first: FIRST + start * UNIT, last: FIRST + start * UNIT + size - 1 };
  }
  // Every block is claimed, most by this process (its earlier tests): reuse its oldest,
  // whose test has most likely ended, as tests of one file run one after another.
  const start = units === 1 && mine.length > 0 ? mine.shift()! : offset;
  if (units === 1) mine.push(start);
  return { first: FIRST + start * UNIT, last: FIRST + start * UNIT + size - 1 };
}

/** Single ports for freePort (net.ts), one after the other from a block of their own. */
let singles: { next: number; last: number } | undefined;

export function nextClaimedPort(): number {
  if (singles === undefined || singles.next > singles.last) {
    const block = portBlock(UNIT);
    singles = { next: block.first, last: block.last };
  }
  return singles.next++;
}
