/*
 * What the master gives each worker it forks, beyond its own command line and
 * environment: settings that suit a process holding thousands of idle connections.
 */

/**
 * The worker's young generation (V8's semi-space), in MiB. By default V8 grows it to
 * 16 MiB a semi-space when most new objects survive, which is exactly what accepting
 * thousands of long-lived connections looks like; at 5000 idle tunnels that growth was
 * about half of the relay's memory per tunnel. 4 MiB keeps it small, at no CPU cost we
 * could measure (docs/benchmarks.md, "Memory per idle tunnel"). A --max-semi-space-size
 * in NODE_OPTIONS or on node's command line wins.
 */
const WORKER_SEMI_SPACE_MIB = 4;

/**
 * glibc gives memory back to the system (trims the heap) whenever 128 KiB lie free at its
 * top, which a relay moving 64 KiB reads does all the time: every trim is paid again in
 * page faults by the next reads. Measured on a 2-core VM: 100 000 to 200 000 faults per
 * GiB relayed and 2 to 5 times the CPU per GiB, against a few hundred faults with this.
 * The price is up to this much free memory kept after a peak; and, as any fixed
 * threshold does, it turns off glibc's adaptive mmap threshold, so allocations of 128 KiB
 * or more are always mapped afresh (none is on the relay's hot path). Set
 * MALLOC_TRIM_THRESHOLD_ (or GLIBC_TUNABLES) yourself to choose another; other C
 * libraries ignore it.
 */
const WORKER_MALLOC_TRIM_THRESHOLD = String(128 * 1024 * 1024);

export function workerExecArgv(): string[] {
  const given = `${process.execArgv.join(' ')} ${process.env['NODE_OPTIONS'] ?? ''}`;
  if (/--max[-_]semi[-_]space[-_]size/.test(given)) return process.execArgv;
  return [`--max-semi-space-size=${WORKER_SEMI_SPACE_MIB}`, ...process.execArgv];
}

/** What the worker's environment adds to the master's. */
export function workerEnv(): Record<string, string> {
  const chosen = process.env['MALLOC_TRIM_THRESHOLD_'] !== undefined || /malloc\.trim_threshold/.test(process.env['GLIBC_TUNABLES'] ?? '');
  return chosen ? {} : { MALLOC_TRIM_THRESHOLD_: WORKER_MALLOC_TRIM_THRESHOLD };
}
