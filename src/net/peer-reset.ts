import type { Socket } from 'node:net';

interface PeerNameHandle {
  getpeername?: (out: object) => number;
}

/**
 * Whether the peer of a socket this process is not reading (a public client held at
 * its door) has already reset it. Unread, a socket hears of neither a FIN nor a reset:
 * the kernel reports them to a read. But a reset disconnects the socket, and then
 * getpeername(2) fails (ENOTCONN): one system call, nothing read, nothing consumed. A
 * FIN leaves the socket connected, rightly: a client that half-closed may still be
 * waiting for its answer.
 */
export function peerHasReset(socket: Socket): boolean {
  if (socket.destroyed) return true;
  const handle = (socket as unknown as { _handle?: PeerNameHandle | null })._handle;
  if (typeof handle?.getpeername !== 'function') return false;
  return handle.getpeername({}) !== 0;
}
