import cluster from 'node:cluster';
import { closeSync, openSync } from 'node:fs';
import { createServer, type ListenOptions, type Server } from 'node:net';

/** A public listen that has not completed in this long is taken as lost for want of a descriptor. */
const LISTEN_TIMEOUT_MS = 5_000;

/**
 * Running out of file descriptors (EMFILE for the process, ENFILE for the system) is
 * the operator's problem, not the peer's, and must be named as such: without this a
 * public listen that fails for want of a descriptor reads as "no free public port",
 * and the pool would even release other services' reservations looking for one.
 */
function isOutOfFds(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}

/** The refusal reason and message for a failed accept(). */
export function acceptFailure(err: NodeJS.ErrnoException): { reason: 'fds' | 'accept'; message: string } {
  return isOutOfFds(err) ? { reason: 'fds', message: 'accept failed: out of file descriptors (raise ulimit -n)' } : { reason: 'accept', message: 'accept failed' };
}

/**
 * Whether a descriptor is free now. A cluster worker's listen() receives its socket
 * from the master over IPC, and at EMFILE that socket is silently lost: listen() then
 * never completes (checked on Node 20). So look before listening.
 */
export function descriptorFree(): boolean {
  try {
    closeSync(openSync('/dev/null', 'r'));
    return true;
  } catch (err) {
    if (isOutOfFds(err)) return false;
    return true;
  }
}

/**
 * Listens: 'listening', or 'taken' when another program holds the port, or 'fds' when no
 * descriptor is left. With `lookFirst`, a cluster worker first tries the port on a
 * listener of its own (see portFree); leave it off for a port the master may already
 * hold for another worker (a predecessor's lease): only the master's socket can have it.
 */
export async function listenOrFail(server: Server, options: ListenOptions, lookFirst = false): Promise<'listening' | 'taken' | 'fds'> {
  if (!descriptorFree()) return 'fds';
  if (lookFirst && cluster.isWorker) {
    const free = await portFree(options);
    if (free !== 'free') return free;
  }
  const failure = await listened(server, options);
  if (failure === undefined) return 'listening';
  server.close();
  return isOutOfFds(failure) ? 'fds' : 'taken';
}

/**
 * Whether a port can be listened on, tried with an exclusive listener of this process,
 * closed at once. A cluster worker's listen() is bound by the master, and Linux (libuv)
 * reports a port that is taken only at listen(), in the worker: Node 20's worker then
 * emits EADDRINUSE but drops the master's socket without closing it, and the master
 * keeps its copy (lib/internal/cluster: it hears of a close only from the handle the
 * worker dropped). One socket leaks in each process per try, until the worker exits.
 * An exclusive listen binds here, and a failed one is closed as any other.
 */
async function portFree(options: ListenOptions): Promise<'free' | 'taken' | 'fds'> {
  const probe = createServer();
  const failure = await listened(probe, { ...options, exclusive: true });
  if (failure !== undefined) return isOutOfFds(failure) ? 'fds' : 'taken';
  await new Promise((resolve) => probe.close(resolve));
  return 'free';
}

/** Starts listening: undefined once it does, else the error (a listen that never completes counts as EMFILE). */
function listened(server: Server, options: ListenOptions): Promise<Error | undefined> {
  return new Promise<Error | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(Object.assign(new Error(`listen did not complete in ${LISTEN_TIMEOUT_MS} ms`), { code: 'EMFILE' })), LISTEN_TIMEOUT_MS);
    server.once('error', (err) => {
      clearTimeout(timer);
      resolve(err);
    });
    server.once('listening', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    server.listen(options);
  });
}

/**
 * A port the kernel picks as free now, found with an exclusive listener of this process
 * and closed at once: for a cluster worker that needs a port of its own, where a
 * listen on port 0 would share its siblings' (the master keys sockets by the port asked for).
 */
export async function freshPort(host: string | undefined): Promise<number> {
  const probe = createServer();
  const failure = await listened(probe, { port: 0, exclusive: true, ...(host === undefined ? {} : { host }) });
  if (failure !== undefined) throw failure;
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
