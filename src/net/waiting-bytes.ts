import { readSync } from 'node:fs';
import type { Socket } from 'node:net';

interface FdHandle {
  fd?: number;
}

/** More than most first requests (an HTTP request line and headers, a TLS ClientHello); the rest follows through the splice. */
const MOST_READ = 16 * 1024;
const scratch = Buffer.allocUnsafe(MOST_READ);

/** What the kernel held for a socket not read yet: its bytes (maybe none), or a reset (or another error). */
export type WaitingBytes = Buffer | 'reset';

const NONE = Buffer.alloc(0);

/**
 * The bytes a peer has already sent on a socket this process has not started reading
 * (accepted with pauseOnConnect), read now without waiting: one non-blocking read(2).
 * A stream can only read on a later event-loop turn, so a line that should leave
 * together with the peer's first bytes would have to wait for them, delaying every
 * protocol whose server speaks first; this way nothing waits. The stream later reads
 * whatever comes after, in order. A FIN read here is not lost: the kernel reports it to
 * every read after it. A reset (like any error of the socket) is reported only once, so
 * it is returned for the caller to pass on. No bytes where the descriptor is not known
 * (not a Unix socket), or where the stream has read already.
 */
export function takeWaitingBytes(socket: Socket): WaitingBytes {
  // A stream that has read may hold bytes (buffered, or taken by whoever read them):
  // bytes read from the kernel now would overtake them.
  if (socket.bytesRead > 0 || socket.readableLength > 0) return NONE;
  const fd = (socket as unknown as { _handle?: FdHandle | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return NONE;
  // Nothing waiting (EAGAIN) is the common case, and an error's stack is most of its
  // cost (measured: 7.4 against 4.7 us a call); no stack is ever needed here.
  const stackLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    const read = readSync(fd, scratch, 0, MOST_READ, null);
    return read === 0 ? NONE : Buffer.from(scratch.subarray(0, read));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR' ? NONE : 'reset';
  } finally {
    Error.stackTraceLimit = stackLimit;
  }
}
