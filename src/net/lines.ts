import type { Socket } from 'node:net';
import { LineReader } from '../protocol/line-reader.js';
import { formatMessage } from '../protocol/format.js';
import type { ErrorCode, LineParser, Message } from '../protocol/messages.js';

/** Why a line could not be had: a protocol error, or (first line only) the peer left first. */
type LineFailure = { ok: false; code: ErrorCode; reason: string; spokeHttp?: true };
/** A first line read: its message, the bytes after it, and the line itself (as it came, without its end). */
export type FirstLine<M extends Message = Message> = { ok: true; msg: M; rest: Buffer; line: string } | LineFailure | { ok: false; code: 'closed'; reason: string };

/** How long a refused peer has to read our ERR before the connection is destroyed. */
const REFUSAL_LINGER_MS = 2_000;

const CLOSED_EARLY = { ok: false, code: 'closed', reason: 'closed before its first line' } as const;

/** The state of one first-line read, kept on its socket: the handlers below are shared by all. */
interface FirstLineRead {
  reader: LineReader;
  parse: LineParser<Message>;
  done: (socket: Socket, result: FirstLine) => void;
}

const kFirstLine = Symbol('first line');
type ReadingSocket = Socket & { [kFirstLine]?: FirstLineRead | undefined };

function onFirstData(this: ReadingSocket, chunk: Buffer): void {
  const read = this[kFirstLine];
  if (read === undefined) return;
  read.reader.push(chunk);
  const next = read.reader.next();
  if (next === undefined) return;
  if (!next.ok) return endFirstLine(this, next);
  const parsed = read.parse(next.line);
  endFirstLine(this, parsed.ok ? { ok: true, msg: parsed.msg, rest: read.reader.takeRest(), line: next.line } : parsed);
}

function onFirstEnd(this: ReadingSocket): void {
  endFirstLine(this, CLOSED_EARLY);
}

/**
 * Reads exactly one protocol line from a fresh connection and stops there; every byte
 * after the line is handed back in `rest`, so a data connection's stream starts
 * exactly where the handshake ended. The socket is left as a fresh one is: nothing
 * reads it until a 'data' listener is attached or it is resumed. No time limit: the
 * caller ends a read that takes too long with endFirstLine. The listeners are shared
 * and the state sits on the socket, so a connection's handshake costs no closure.
 */
export function readFirstLineThen<M extends Message>(socket: Socket, parse: LineParser<M>, head: Buffer | undefined, done: (socket: Socket, result: FirstLine<M>) => void): void {
  const reading = socket as ReadingSocket;
  reading[kFirstLine] = { reader: new LineReader(), parse, done: done as FirstLineRead['done'] };
  socket.on('data', onFirstData);
  socket.on('end', onFirstEnd);
  socket.on('close', onFirstEnd);
  if (head !== undefined && head.length > 0) onFirstData.call(reading, head);
  if (reading[kFirstLine] !== undefined) socket.resume();
}

/** Ends the first-line read in progress on `socket`, if any, with `result` (a timeout, an eviction). */
export function endFirstLine(socket: Socket, result: FirstLine): void {
  const reading = socket as ReadingSocket;
  const read = reading[kFirstLine];
  if (read === undefined) return;
  reading[kFirstLine] = undefined;
  socket.pause();
  socket.off('data', onFirstData);
  // Back to "no consumer yet" rather than "paused", so that whoever takes the socket
  // next starts it by attaching 'data', as with a socket fresh from accept().
  (socket as { readableFlowing: boolean | null }).readableFlowing = null;
  socket.off('end', onFirstEnd);
  socket.off('close', onFirstEnd);
  read.done(socket, result);
}

/** readFirstLineThen as a promise, bounded by `timeoutMs` when given. */
export function readFirstLine<M extends Message>(socket: Socket, parse: LineParser<M>, timeoutMs: number | undefined, head?: Buffer): Promise<FirstLine<M>> {
  return new Promise((resolve) => {
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => endFirstLine(socket, firstLineTimeout(timeoutMs)), timeoutMs);
    readFirstLineThen(socket, parse, head, (_socket, result) => {
      clearTimeout(timer);
      resolve(result);
    });
  });
}

/** What a first line that did not come in time reads as. */
export function firstLineTimeout(timeoutMs: number): LineFailure {
  return { ok: false, code: 'timeout', reason: `no complete line within ${timeoutMs} ms` };
}

/**
 * Delivers every line of a long-lived control connection, in order, to `onMessage`;
 * the first unreadable or malformed line goes to `onFailure` and ends the reading.
 * `head` holds bytes that arrived with the first line.
 */
export function readLines<M extends Message>(socket: Socket, head: Buffer, parse: LineParser<M>, onMessage: (msg: M) => void, onFailure: (failure: LineFailure) => void): void {
  const reader = new LineReader();
  let failed = false;
  const drain = (): void => {
    for (let next = reader.next(); next !== undefined && !failed; next = reader.next()) {
      if (!next.ok) {
        failed = true;
        socket.off('data', onData);
        return onFailure(next);
      }
      const parsed = parse(next.line);
      if (!parsed.ok) {
        failed = true;
        socket.off('data', onData);
        return onFailure(parsed);
      }
      onMessage(parsed.msg);
    }
  };
  const onData = (chunk: Buffer): void => {
    reader.push(chunk);
    drain();
  };
  if (head.length > 0) {
    reader.push(head);
    drain();
  }
  if (!failed) {
    socket.on('data', onData);
    socket.resume();
  }
}

/** Writes one message; false means the socket is gone. */
export function sendMessage(socket: Socket, msg: Message): boolean {
  if (socket.destroyed || !socket.writable) return false;
  socket.write(formatMessage(msg));
  return true;
}

/**
 * Writes a line that the peer's first bytes usually follow at once: the CLIENT line of a
 * tunnel whose public client spoke first (HTTP, TLS, most protocols), whose bytes are
 * already waiting when the tunnel opens but are read one event-loop turn later. The line
 * is held until the end of that next turn, so line and bytes leave in one write: one
 * system call and one wake-up of the service fewer per client. For a client that says
 * nothing first (SSH, SMTP: the server speaks first) the line waits one turn: microseconds
 * on an idle relay, as long as a turn takes on a busy one.
 */
export function sendMessageBeforeData(socket: Socket, msg: Message): boolean {
  if (socket.destroyed || !socket.writable) return false;
  socket.cork();
  socket.write(formatMessage(msg));
  // The first immediate runs at the end of this turn; the one it queues, at the end of
  // the next, after that turn's poll phase has read the client. Two for every socket
  // corked in one turn, not two per socket.
  if (corkedThisTurn.length === 0) setImmediate(endOfCorkingTurn);
  corkedThisTurn.push(socket);
  return true;
}

/** Sockets sendMessageBeforeData corked in this event-loop turn. */
let corkedThisTurn: Socket[] = [];

function endOfCorkingTurn(): void {
  setImmediate(uncorkAll, corkedThisTurn);
  corkedThisTurn = [];
}

function uncorkAll(sockets: Socket[]): void {
  for (const socket of sockets) socket.uncork();
}

/**
 * Refuses a peer: the reply (an ERR line, or raw text for a peer that spoke HTTP)
 * then FIN, and a destroy after a short linger whether or not the peer closes.
 */
export function refuse(socket: Socket, reply: string | Buffer | undefined): void {
  if (socket.destroyed) return;
  // Whatever the peer keeps sending is unwanted; reading it keeps the kernel from
  // answering with a RST that could destroy our reply before the peer reads it.
  socket.removeAllListeners('data');
  socket.on('data', () => {});
  socket.resume();
  if (reply !== undefined && socket.writable) socket.end(reply);
  else socket.end();
  setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
}

/** The reply for a refusal: an ERR line, or an HTTP 400 for something that spoke HTTP. */
export function refusalReply(code: ErrorCode, text: string, spokeHttp = false): string {
  if (spokeHttp) {
    const body = `This is a tcp-relay service port, not an HTTP server.\n${text}\n`;
    return `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
  }
  return formatMessage({ kind: 'ERR', code, text });
}
