import type { Server } from 'node:net';

/** What net.Server keeps of `noDelay`/`keepAlive` and applies to each socket it accepts (Node 20). */
interface AcceptOptions {
  noDelay: boolean;
  keepAlive: boolean;
  /** Seconds, as net.Server stores it. */
  keepAliveInitialDelay: number;
  _handle?: {
    setNoDelay?: (enable: boolean) => number;
    setKeepAlive?: (enable: boolean, delaySeconds: number) => number;
  } | null;
}

/**
 * Moves a listening server's `noDelay` and `keepAlive` from every accepted socket to the
 * listening socket. Linux copies TCP_NODELAY, SO_KEEPALIVE and the keepalive timings
 * into each socket it accepts, so setting them once saves the five setsockopt calls
 * net.Server makes per accepted socket: ten per relayed client, a few percent of the
 * relay's CPU per short connection (see docs/benchmarks.md). Elsewhere, or when the
 * listener refuses an option, the server keeps setting them per socket as before.
 * Call it once the server is listening. Returns whether the options moved. Node then
 * believes accepted sockets have no TCP_NODELAY, so a later setNoDelay(false) on one
 * would do nothing; nothing here calls it.
 */
export function setOnListener(server: Server): boolean {
  if (process.platform !== 'linux') return false;
  const accepting = server as unknown as AcceptOptions;
  const handle = accepting._handle;
  if (handle?.setNoDelay === undefined || handle.setKeepAlive === undefined) return false;
  if (accepting.noDelay && handle.setNoDelay(true) !== 0) return false;
  if (accepting.keepAlive && handle.setKeepAlive(true, accepting.keepAliveInitialDelay) !== 0) return false;
  accepting.noDelay = false;
  accepting.keepAlive = false;
  return true;
}
