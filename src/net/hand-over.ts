import type { Socket } from 'node:net';
import { ignoreSocketError } from './ignore-error.js';
import { resetSocket } from './splice.js';

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

/**
 * Sends the socket as the handle of one IPC message (process.send, worker.send) and calls
 * `sent` once the message has been written, or with the error that kept it from being.
 */
export type SendHandle = (socket: Socket, sent: (err?: Error | null) => void) => void;

/**
 * Sends a connected socket to another process; `send` gets the bytes this process had
 * already read, to carry in its message. The socket belongs to the receiver afterwards.
 */
export function sendSocket(socket: Socket, send: (head: Buffer, ...rest: Parameters<SendHandle>) => void): void {
  const chunks: Buffer[] = [];
  if (socket.readableLength > 0) {
    for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) chunks.push(chunk);
  }
  letGo(socket, (handle, sent) => send(Buffer.concat(chunks), handle, sent));
}

/**
 * Passes on a socket received from another process, in the tick it arrived and without
 * reading a byte of it (what its sender had read travels in the message). With nobody
 * to take it (`send` undefined) it is reset, never closed: its peer would read a FIN
 * as an answer.
 */
export function passSocketOn(socket: Socket, send: SendHandle | undefined): void {
  if (send !== undefined) return letGo(socket, send);
  stopKernelReads(socket);
  resetSocket(socket);
}

function letGo(socket: Socket, send: SendHandle): void {
  stopKernelReads(socket);
  // Node follows a socket sent away from its net.Server, so that server.close() waits
  // until the receiver reports it closed; a receiver that passes it on and keeps its
  // copy open never does (seen: a worker's shutdown hung). This process forgets it.
  (socket as unknown as { server: unknown }).server = null;
  // Node sends one handle at a time: the next waits, still on its socket, until the
  // receiver acknowledges the last. So the socket may be let go of only once its message
  // is written (its handle taken off it then); closing it sooner closes a handle still
  // queued, and the receiver never gets it (seen: 1 of 10 held clients reached a new
  // worker, the others were closed). One that could not be sent is reset, never closed.
  send(socket, (err) => {
    // Sent: only the JavaScript object is left to close, its handle has gone.
    if (err === null || err === undefined) socket.destroy();
    else resetSocket(socket);
  });
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
