import type { Socket } from 'node:net';
import { MAX_V1_BYTES, MAX_V2_BODY, parseProxyHeader, type ProxiedEnds } from '../protocol/proxy-parse.js';

export type ProxyPrelude = { ok: true; ends: ProxiedEnds | undefined } | { ok: false; reason: string };

/** More than any header can be: a peer that sent this much without one has none. */
const MOST_READ = 16 + MAX_V2_BODY + MAX_V1_BYTES;

/**
 * Reads the PROXY header a load balancer puts in front of a connection and takes it off
 * the stream: the bytes after it are put back (unshift), so whoever reads the socket
 * next gets the client's stream from its first byte, and the socket is left as a fresh
 * one is (nothing reads it until someone attaches 'data'). Bounded in time and bytes.
 */
export function readProxyPrelude(socket: Socket, timeoutMs: number): Promise<ProxyPrelude> {
  return new Promise((resolve) => {
    let read: Buffer = Buffer.alloc(0);
    const finish = (result: ProxyPrelude, rest?: Buffer): void => {
      clearTimeout(timer);
      socket.pause();
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      (socket as { readableFlowing: boolean | null }).readableFlowing = null;
      if (rest !== undefined && rest.length > 0) socket.unshift(rest);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      read = read.length === 0 ? chunk : Buffer.concat([read, chunk]);
      const parsed = parseProxyHeader(read.subarray(0, MOST_READ));
      if (parsed.state === 'more') return;
      if (parsed.state === 'bad') return finish({ ok: false, reason: parsed.reason });
      finish({ ok: true, ends: parsed.ends }, read.subarray(parsed.length));
    };
    const onEnd = (): void => finish({ ok: false, reason: 'closed before its PROXY header was complete' });
    const timer = setTimeout(() => finish({ ok: false, reason: `no complete PROXY header within ${timeoutMs} ms` }), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.resume();
  });
}
