import type { Socket } from 'node:net';

type SpliceSide = 'a' | 'b';

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

interface SpliceOptions {
  /** Updated live, for whoever reports progress before the splice settles. */
  counts?: SpliceCounts;
  /**
   * Running totals this tunnel's bytes are also added to as they flow (its service's,
   * the relay's), so a reader of totals never has to sum the open tunnels.
   */
  totals?: readonly SpliceCounts[];
  /** Bytes already read from a (a handshake reader's leftovers) to deliver to b first. */
  headFromA?: Buffer;
  headFromB?: Buffer;
}

/** The TCP socket under each TLS socket wrapped around one we accepted (see tlsAcceptor). */
const tcpUnder = new WeakMap<Socket, Socket>();

/** Records that `tls` runs over `tcp`, so that resetting `tls` resets `tcp`. */
export function runsOver(tls: Socket, tcp: Socket): void {
  tcpUnder.set(tls, tcp);
}

/**
 * Resets a connection (RST, not FIN) so the peer learns it ended abnormally.
 * A TLS socket cannot reset itself: the TCP socket under it is reset when known,
 * else closing it is the best it can do.
 */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    const tcp = tcpUnder.get(socket);
    if (tcp === undefined) {
      socket.resetAndDestroy();
      return;
    }
    tcp.resetAndDestroy();
    socket.destroy();
  } catch {
    socket.destroy();
  }
}

/** What both directions of one splice share. */
interface Tunnel {
  counts: SpliceCounts;
  totals: readonly SpliceCounts[];
  started: number;
  closedFirst: SpliceSide | undefined;
  outcome: SpliceResult['outcome'];
  error: string | undefined;
  openSides: number;
  settle: (result: SpliceResult) => void;
}

/** One socket's place in a splice, kept on the socket itself. */
interface Side {
  side: SpliceSide;
  peer: Socket;
  tunnel: Tunnel;
  /** Its FIN was sent by closing it, not by end() (see onEnd): a clean finish all the same. */
  finishedByClose: boolean;
}

// The handlers below are shared by every splice and find their state through `this`
// (EventEmitter calls a listener with the emitting socket as `this`): an idle tunnel
// then costs its two sockets and two small objects, not a dozen closures.
const kSide = Symbol('splice side');
type SplicedSocket = Socket & { [kSide]: Side };

function count(tunnel: Tunnel, side: SpliceSide, bytes: number): void {
  tunnel.counts[side] += bytes;
  for (const totals of tunnel.totals) totals[side] += bytes;
}

function onData(this: SplicedSocket, chunk: Buffer): void {
  const { side, peer, tunnel } = this[kSide];
  count(tunnel, side, chunk.length);
  if (!peer.write(chunk)) this.pause();
}

/** The peer's buffer drained: the socket that filled it may read again. */
function onDrain(this: SplicedSocket): void {
  this[kSide].peer.resume();
}

function onEnd(this: SplicedSocket): void {
  const { side, peer, tunnel } = this[kSide];
  tunnel.closedFirst ??= side;
  if (canFinishByClose(peer)) {
    (peer as SplicedSocket)[kSide].finishedByClose = true;
    peer.destroy();
  } else {
    peer.end();
  }
}

/**
 * Whether this FIN finishes the tunnel's second direction with nothing left to say: the
 * peer's own FIN came first (nothing more to read from it) and every byte for it is
 * already with the kernel. Then closing the peer sends the same FIN, after those bytes,
 * and saves the shutdown() and the two epoll changes that end() costs: three of the
 * relay's two dozen system calls per short connection. Not for TLS, whose close_notify
 * only end() sends.
 */
function canFinishByClose(peer: Socket): boolean {
  return peer.readableEnded && peer.writable && peer.writableLength === 0 && (peer as { encrypted?: boolean }).encrypted !== true;
}

function onError(this: SplicedSocket, err: Error): void {
  const { side, peer, tunnel } = this[kSide];
  tunnel.closedFirst ??= side;
  if (tunnel.outcome !== 'reset') {
    tunnel.outcome = 'reset';
    tunnel.error = (err as NodeJS.ErrnoException).code ?? err.message;
  }
  resetSocket(peer);
}

function onClose(this: SplicedSocket): void {
  const { side, peer, tunnel, finishedByClose } = this[kSide];
  tunnel.closedFirst ??= side;
  // Closed cleanly means FIN both ways; anything else (a local destroy, a timeout)
  // must not leave the other side open with nowhere to send.
  const clean = this.readableEnded && (this.writableFinished || finishedByClose);
  if (!clean && !peer.destroyed) {
    if (tunnel.outcome === 'end') tunnel.outcome = 'destroyed';
    resetSocket(peer);
  }
  if (--tunnel.openSides > 0) return;
  tunnel.settle({
    bytesAToB: tunnel.counts.a,
    bytesBToA: tunnel.counts.b,
    durationMs: Math.round(performance.now() - tunnel.started),
    closedFirst: tunnel.closedFirst,
    outcome: tunnel.outcome,
    ...(tunnel.error === undefined ? {} : { error: tunnel.error }),
  });
}

function attach(socket: Socket, side: Side): void {
  const spliced = socket as SplicedSocket;
  spliced[kSide] = side;
  spliced.on('data', onData);
  spliced.on('drain', onDrain);
  spliced.on('end', onEnd);
  spliced.on('error', onError);
  spliced.on('close', onClose);
}

function startFlowing(from: Socket, to: Socket, head: Buffer | undefined, tunnel: Tunnel, side: SpliceSide): void {
  if (head !== undefined && head.length > 0) {
    count(tunnel, side, head.length);
    // A head that filled the other side's buffer keeps its sender paused until 'drain'.
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
  return new Promise((settle) => spliceThen(a, b, options, settle));
}

/**
 * splice() with a callback instead of a promise, for the relay, which keeps thousands
 * of tunnels open: a promise and its reaction would be retained by every one of them.
 */
export function spliceThen(a: Socket, b: Socket, options: SpliceOptions, settle: (result: SpliceResult) => void): void {
  const counts = options.counts ?? { a: 0, b: 0 };
  if (a.closed || b.closed) {
    resetSocket(a);
    resetSocket(b);
    settle({ bytesAToB: 0, bytesBToA: 0, durationMs: 0, closedFirst: a.closed ? 'a' : 'b', outcome: 'destroyed' });
    return;
  }
  const tunnel: Tunnel = { counts, totals: options.totals ?? [], started: performance.now(), closedFirst: undefined, outcome: 'end', error: undefined, openSides: 2, settle };
  // Paused explicitly, so attaching 'data' does not start the flow before a head is written.
  a.pause();
  b.pause();
  attach(a, { side: 'a', peer: b, tunnel, finishedByClose: false });
  attach(b, { side: 'b', peer: a, tunnel, finishedByClose: false });
  // Either socket may have been paused while its handshake was read.
  startFlowing(a, b, options.headFromA, tunnel, 'a');
  startFlowing(b, a, options.headFromB, tunnel, 'b');
}
