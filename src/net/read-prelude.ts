import type { Socket } from 'node:net';
import { MAX_PRELUDE_BYTES, readPrelude } from '../protocol/prelude.js';

/** Most reads a prelude may take; a ClientHello split over a few TCP segments needs a handful. */
const MAX_PRELUDE_READS = 256;

/** A client's first bytes and the host they name, or why no host could be had. */
export type PreludeRead =
  { ok: true; kind: 'tls' | 'http'; host: string | undefined; bytes: Buffer } | { ok: false; why: 'prelude-timeout' | 'prelude-too-long' | 'prelude-bad' | 'closed'; detail: string };

/**
 * Reads a fresh connection, without answering, until its first bytes name a host (see
 * protocol/prelude.ts), within `timeoutMs` and MAX_PRELUDE_BYTES. The bytes read are
 * handed back, and the socket is left as one fresh from accept (no consumer, paused), so
 * whoever puts them back with `unshift` and reads next sees the stream from its start.
 */
export function readClientPrelude(socket: Socket, timeoutMs: number): Promise<PreludeRead> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: PreludeRead): void => {
      clearTimeout(timer);
      socket.pause();
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      (socket as { readableFlowing: boolean | null }).readableFlowing = null;
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      const bytes = chunks.length === 1 ? chunk : Buffer.concat(chunks, size);
      const prelude = readPrelude(bytes.subarray(0, MAX_PRELUDE_BYTES));
      if (prelude.kind === 'bad') return finish({ ok: false, why: 'prelude-bad', detail: prelude.reason });
      if (prelude.kind !== 'more') return finish({ ok: true, kind: prelude.kind, host: prelude.host, bytes });
      if (size >= MAX_PRELUDE_BYTES) finish({ ok: false, why: 'prelude-too-long', detail: `no host named within ${MAX_PRELUDE_BYTES} bytes` });
      // Each read parses everything so far again: a client dribbling bytes must not make that quadratic.
      else if (chunks.length >= MAX_PRELUDE_READS) finish({ ok: false, why: 'prelude-too-long', detail: `no host named within ${MAX_PRELUDE_READS} reads` });
    };
    const onEnd = (): void => finish({ ok: false, why: 'closed', detail: 'closed before naming a host' });
    const timer = setTimeout(() => finish({ ok: false, why: 'prelude-timeout', detail: `no host named within ${timeoutMs} ms` }), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.resume();
  });
}
