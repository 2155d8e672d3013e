import type { Socket } from 'node:net';
import { ignoreSocketError } from './ignore-error.js';

/*
 * A connected socket crosses between processes as its file descriptor (IPC handle).
 * Bytes the kernel still holds travel with it; bytes this process already read do not,
 * and a handle that keeps reading after it was sent loses what it reads (Node replaces
 * its read callback with a no-op until the receiver acknowledges). So the sender takes
 * what its stream buffered and stops kernel reads before sending, and every process that
 * only passes a socket on stops its reads on arrival (Node starts them on receipt).
 */

interface ReadableHandle {
  readStop?: () => number;
}

/** Stops reading from the kernel; what arrives stays there for the next owner. */
export function stopKernelReads(socket: Socket): void {
  // net.Socket.pause() only pauses the JavaScript stream, the handle keeps reading.
  (socket as unknown as { _handle?: ReadableHandle | null })._handle?.readStop?.();
}

/** Makes a socket ready to send to another process; returns the bytes already read from it. */
export function detachForHandOver(socket: Socket): Buffer {
  const chunks: Buffer[] = [];
  if (socket.readableLength > 0) {
    for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) chunks.push(chunk);
  }
  stopKernelReads(socket);
  return Buffer.concat(chunks);
}

/**
 * A socket received from another process arrives as a plain net.Socket: restore what
 * the relay's servers give every socket (half-open allowed, errors handled) and put the
 * sender's already-read bytes back in front. Must run in the same tick it arrived, before
 * an EOF can be read with half-open still off.
 */
export function adoptHandedOver(socket: Socket, head: Buffer): Socket {
  socket.allowHalfOpen = true;
  socket.on('error', ignoreSocketError);
  socket.pause();
  if (head.length > 0) socket.unshift(head);
  return socket;
}
