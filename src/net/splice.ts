import type { Socket } from 'node:net';

export type SpliceSide = 'a' | 'b';

export interface SpliceResult {
  /** Bytes read from a and written to b, head bytes included. */
  bytesAToB: number;
  bytesBToA: number;
  durationMs: number;
  /** The side whose peer ended first (FIN, reset or error), or was closed locally first. */
  closedFirst: SpliceSide;
  /** 'end': both directions finished with FIN; 'reset': a side reset or failed; 'destroyed': closed locally. */
  outcome: 'end' | 'reset' | 'destroyed';
  error?: string;
}

/** Bytes moved so far in each direction; splice updates it in place as bytes flow. */
export interface SpliceCounts {
  a: number;
  b: number;
}

export interface SpliceOptions {
  /** Updated live, for whoever reports progress before the splice settles. */
  counts?: SpliceCounts;
  /** Bytes already read from a (a handshake reader's leftovers) to deliver to b first. */
  headFromA?: Buffer;
  headFromB?: Buffer;
}

/**
 * Resets a connection (RST, not FIN) so the peer learns it ended abnormally.
 * A TLS socket has no TCP handle to reset; closing it is the best it can do.
 */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

function startFlowing(from: Socket, to: Socket, head: Buffer | undefined, count: (n: number) => void): void {
  if (head !== undefined && head.length > 0) {
    count(head.length);
    if (!to.write(head)) return;
  }
  from.resume();
}

/**
 * Joins two connected sockets byte for byte until both directions are done.
 *
 * Each direction is independent: a FIN from one side becomes a FIN to the other while
 * the opposite direction keeps flowing (both sockets need allowHalfOpen: true); a reset
 * or error on one side resets the other; a slow reader pauses the opposite sender
 * (backpressure), so at most one socket buffer per direction is held. stream.pipeline
 * is deliberately not used: it turns a peer's reset into a plain FIN.
 *
 * Settles once, after both sockets have closed. Never rejects.
 */
export function splice(a: Socket, b: Socket, options: SpliceOptions = {}): Promise<SpliceResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    const counts = options.counts ?? { a: 0, b: 0 };
    let closedFirst: SpliceSide | undefined;
    let outcome: SpliceResult['outcome'] = 'end';
    let error: string | undefined;
    let openSides = 2;

    const pump = (from: Socket, to: Socket, side: SpliceSide): void => {
      from.on('data', (chunk: Buffer) => {
        counts[side] += chunk.length;
        if (!to.write(chunk)) from.pause();
      });
      to.on('drain', () => from.resume());
      from.on('end', () => {
        closedFirst ??= side;
        to.end();
      });
      from.on('error', (err: Error) => {
        closedFirst ??= side;
        if (outcome !== 'reset') {
          outcome = 'reset';
          error = (err as NodeJS.ErrnoException).code ?? err.message;
        }
        resetSocket(to);
      });
      from.on('close', () => {
        closedFirst ??= side;
        // Closed cleanly means FIN both ways; anything else (a local destroy, a
        // timeout) must not leave the other side open with nowhere to send.
        const clean = from.readableEnded && from.writableFinished;
        if (!clean && !to.destroyed) {
          if (outcome === 'end') outcome = 'destroyed';
          resetSocket(to);
        }
        if (--openSides === 0) {
          resolve({
            bytesAToB: counts.a,
            bytesBToA: counts.b,
            durationMs: Math.round(performance.now() - started),
            closedFirst,
            outcome,
            ...(error === undefined ? {} : { error }),
          });
        }
      });
    };

    if (a.closed || b.closed) {
      resetSocket(a);
      resetSocket(b);
      resolve({ bytesAToB: 0, bytesBToA: 0, durationMs: 0, closedFirst: a.closed ? 'a' : 'b', outcome: 'destroyed' });
      return;
    }
    pump(a, b, 'a');
    pump(b, a, 'b');
    // Either socket may have been paused while its handshake was read; a head
    // that filled the other side's buffer keeps its sender paused until 'drain'.
    startFlowing(a, b, options.headFromA, (n) => (counts.a += n));
    startFlowing(b, a, options.headFromB, (n) => (counts.b += n));
  });
}
