/**
 * The relay's connection limits, derived from what this machine can hold: the open-file
 * limit (every tunnel costs two descriptors, the public client and the data connection)
 * and memory (a busy tunnel holds up to a socket buffer per direction in user space).
 * haproxy sizes its maxconn from `ulimit -n` the same way; the memory bound matters
 * because Node raises its soft limit to the hard one, which systemd and container
 * runtimes set to 500 000 or more.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** What the derivation starts from. */
interface MachineFigures {
  /** RLIMIT_NOFILE (soft) of this process; undefined where it cannot be read. */
  fdLimit: number | undefined;
  /** Memory this process may use: the cgroup limit where there is one, else physical memory. */
  memoryBytes: number;
}

export interface DerivedLimits {
  maxClientsPerService: number;
  maxPendingPerService: number;
  /** Public clients (open or waiting for their dial-back) across all services. */
  maxTunnels: number;
  /** Prewarmed idle data connections across all services: they come out of the descriptors kept back. */
  maxWarmTotal: number;
  /** One phrase saying where the figures came from, for --help and the start-up log line. */
  basis: string;
  /** True when derived from this machine's figures: the command line's limits are then lowered to these. */
  measured: boolean;
}

/** Descriptors of one tunnel: the public client and the data connection. */
const FDS_PER_TUNNEL = 2;
/** Share of descriptors kept for listeners, control and prewarmed connections, logs, the metrics listener. */
const RESERVED_FD_SHARE = 1 / 8;
const MIN_RESERVED_FDS = 128;
/**
 * Share of the kept-back descriptors that prewarmed connections may hold. The rest stays
 * for what the relay cannot do without: listeners, control connections, handshakes, logs.
 */
const WARM_SHARE_OF_RESERVED = 1 / 2;
/** Share of memory the tunnels may claim, at MEMORY_PER_TUNNEL each. */
const MEMORY_SHARE = 1 / 4;
/** A tunnel moving bulk data: Node's 64 KiB read chunk and a queued write. Idle tunnels cost ~8 KiB. */
const MEMORY_PER_TUNNEL = 64 * 1024;
/** Never derive less than this: a machine this small gets a refusal, not a relay that serves nobody. */
const MIN_TUNNELS = 16;

/** The defaults of releases before this derivation, used where the fd limit is unknown. */
export const FALLBACK_LIMITS: DerivedLimits = {
  maxClientsPerService: 4096,
  maxPendingPerService: 4096,
  maxTunnels: 65_536,
  // What the fixed defaults allowed: 256 services of 64 each.
  maxWarmTotal: 16_384,
  basis: 'fixed (open-file limit unknown on this platform)',
  measured: false,
};

/**
 * Pure: the limits for a machine. One service may use the whole global cap (a single
 * big websocket server is a normal deployment); a waiting client is also a client, so
 * pending shares the same bound.
 */
export function deriveLimits(machine: MachineFigures): DerivedLimits {
  const { fdLimit, memoryBytes } = machine;
  if (fdLimit === undefined || !Number.isFinite(fdLimit) || fdLimit <= 0) return FALLBACK_LIMITS;
  const reserved = Math.max(MIN_RESERVED_FDS, Math.ceil(fdLimit * RESERVED_FD_SHARE));
  const byFds = Math.floor((fdLimit - reserved) / FDS_PER_TUNNEL);
  const byMemory = Math.floor((memoryBytes * MEMORY_SHARE) / MEMORY_PER_TUNNEL);
  const maxTunnels = Math.max(MIN_TUNNELS, Math.min(byFds, byMemory));
  const bound = byFds <= byMemory ? `open-file limit ${fdLimit}` : `memory ${formatGiB(memoryBytes)} (open-file limit ${fdLimit})`;
  const maxWarmTotal = Math.floor(reserved * WARM_SHARE_OF_RESERVED);
  return { maxClientsPerService: maxTunnels, maxPendingPerService: maxTunnels, maxTunnels, maxWarmTotal, basis: `derived from ${bound}`, measured: true };
}

function formatGiB(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/** The soft "Max open files" of a /proc/PID/limits text; undefined when absent or "unlimited". */
export function parseFdLimit(procLimits: string): number | undefined {
  const match = /^Max open files\s+(\d+)\s/m.exec(procLimits);
  return match === null ? undefined : Number(match[1]);
}

/** This process's figures. Node 20 has no getrlimit, so on Linux /proc says it; elsewhere it is unknown. */
export function machineFigures(): MachineFigures {
  let fdLimit: number | undefined;
  try {
    fdLimit = parseFdLimit(readFileSync('/proc/self/limits', 'utf8'));
  } catch {
    fdLimit = undefined;
  }
  const total = os.totalmem();
  // Without a cgroup limit Node reports a huge number (or 0): physical memory is the bound then.
  const constrained = process.constrainedMemory?.() ?? 0;
  const memoryBytes = constrained > 0 && constrained < total ? constrained : total;
  return { fdLimit, memoryBytes };
}
