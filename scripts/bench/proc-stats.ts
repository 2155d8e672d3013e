/**
 * CPU and memory of the processes under test, read from /proc. A forwarder is
 * treated as a process tree because socat forks one child per connection: its CPU
 * is the root's own and reaped children's time plus every live descendant's, and its
 * memory is the PSS sum of the tree (PSS, so pages shared after fork count once).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

interface Stat {
  ppid: number;
  /** utime + stime, in ticks. */
  own: number;
  /** cutime + cstime: children that exited and were reaped, in ticks. */
  reaped: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const n = (i: number): number => Number(fields[i] ?? 0);
    return { ppid: n(1), own: n(11) + n(12), reaped: n(13) + n(14) };
  } catch {
    return undefined;
  }
}

/** Live descendants of pid (a scan of /proc: cheap enough between measurements). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const child = Number(entry);
    if (!Number.isInteger(child) || child <= 0) continue;
    const stat = readStat(child);
    if (stat === undefined) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push(child);
    children.set(stat.ppid, list);
  }
  const found: number[] = [];
  for (let queue = [...(children.get(pid) ?? [])]; queue.length > 0;) {
    const next = queue.pop()!;
    found.push(next);
    queue = queue.concat(children.get(next) ?? []);
  }
  return found;
}

/** CPU seconds used so far by pid and everything it forked. */
export function treeCpuSeconds(pid: number): number {
  const root = readStat(pid);
  if (root === undefined) return NaN;
  let ticks = root.own + root.reaped;
  for (const child of descendants(pid)) ticks += readStat(child)?.own ?? 0;
  return ticks / clockTicks();
}

function statusField(pid: number, field: string): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return match ? Number(match[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Resident set size of one process, KiB. */
export function rssKiB(pid: number): number {
  return statusField(pid, 'VmRSS');
}

function pssOf(pid: number): number {
  try {
    const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** Proportional set size of pid and its descendants, KiB. */
export function treePssKiB(pid: number): number {
  return [pid, ...descendants(pid)].reduce((sum, p) => sum + pssOf(p), 0);
}

/** Resident set size of pid and its descendants, KiB (overcounts shared pages; for before/after ratios). */
export function treeRssKiB(pid: number): number {
  return [pid, ...descendants(pid)].reduce((sum, p) => sum + (rssKiB(p) || 0), 0);
}

/** Open file descriptors of pid and its descendants: how the bench sees connections drain. */
export function treeFdCount(pid: number): number {
  return [pid, ...descendants(pid)].reduce((sum, p) => {
    try {
      return sum + readdirSync(`/proc/${p}/fd`).length;
    } catch {
      return sum;
    }
  }, 0);
}

export function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'latin1'))?.[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * TCP connections of a process tree to `port` (any local address), from /proc/net/tcp and
 * tcp6 of this network namespace: a relayed service's control connection and the
 * connections it keeps parked at its relay.
 */
export function treeConnectionsTo(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const p of [pid, ...descendants(pid)]) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${p}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const socket = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p}/fd/${fd}`));
        if (socket !== null) inodes.add(socket[1]!);
      } catch {
        // closed meanwhile
      }
    }
  }
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const remote = fields[2]?.split(':')[1];
      if (remote !== undefined && parseInt(remote, 16) === port && inodes.has(fields[9] ?? '')) count++;
    }
  }
  return count;
}
