import type { Socket } from 'node:net';
import { LineReader } from '../protocol/line-reader.js';
import { formatMessage } from '../protocol/format.js';
import type { ErrorCode, LineParser, Message } from '../protocol/messages.js';

/** Why a line could not be had: a protocol error, or (first line only) the peer left first. */
type LineFailure = { ok: false; code: ErrorCode; reason: string; spokeHttp?: true };
export type FirstLine<M extends Message = Message> = { ok: true; msg: M; rest: Buffer } | LineFailure | { ok: false; code: 'closed'; reason: string };

/** How long a refused peer has to read our ERR before the connection is destroyed. */
const REFUSAL_LINGER_MS = 2_000;

/**
 * Reads exactly one protocol line from a fresh connection and stops there; every byte
 * after the line is handed back in `rest`, so a data connection's stream starts
 * exactly where the handshake ended. The socket is left as a fresh one is: nothing
 * reads it until a 'data' listener is attached or it is resumed. Without a timeout
 * it waits as long as the connection lasts.
 */
export function readFirstLine<M extends Message>(socket: Socket, parse: LineParser<M>, timeoutMs: number | undefined, head?: Buffer): Promise<FirstLine<M>> {
  return new Promise((resolve) => {
    const reader = new LineReader();
    const finish = (result: FirstLine<M>): void => {
      clearTimeout(timer);
      socket.pause();
      socket.off('data', onData);
      // Back to "no consumer yet" rather than "paused", so that whoever takes the socket
      // next starts it by attaching 'data', as with a socket fresh from accept().
      (socket as { readableFlowing: boolean | null }).readableFlowing = null;
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      resolve(result);
    };
    let done = false;
    const onData = (chunk: Buffer): void => {
      reader.push(chunk);
      const next = reader.next();
      if (next === undefined) return;
      done = true;
      if (!next.ok) return finish(next);
      const parsed = parse(next.line);
      finish(parsed.ok ? { ok: true, msg: parsed.msg, rest: reader.takeRest() } : parsed);
    };
    const onEnd = (): void => finish({ ok: false, code: 'closed', reason: 'closed before its first line' });
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => finish({ ok: false, code: 'timeout', reason: `no complete line within ${timeoutMs} ms` }), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    if (head !== undefined && head.length > 0) onData(head);
    if (!done) socket.resume();
  });
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
  // the next, after that turn's poll phase has read the client.
  setImmediate(uncorkNextTurn, socket);
  return true;
}

function uncorkNextTurn(socket: Socket): void {
  setImmediate(uncork, socket);
}

function uncork(socket: Socket): void {
  socket.uncork();
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
