import type { Socket } from 'node:net';
import { endFirstLine, firstLineTimeout, readFirstLineThen, type FirstLine } from '../net/lines.js';
import type { ServiceMessage } from '../protocol/messages.js';
import { parseServiceLine } from '../protocol/parse.js';
import type { Refusals } from './refusals.js';

/**
 * Connections still in their handshake held at once. Past it the OLDEST is dropped, not
 * the newcomer: a flood of silent connections then only evicts itself, while a real
 * service's dial-back, which completes in a round trip, still gets through. As large as
 * the pending dial-backs one service may have, so a legitimate burst of dial-backs (2000
 * clients at once, tested) is not mistaken for a flood.
 */
const MAX_HANDSHAKES = 4096;

const EVICTED = { ok: false, code: 'closed', reason: 'evicted: too many handshakes in progress' } as const;

/** A connection in its handshake: since when, and who gets its line. */
interface Handshake {
  startedAt: number;
  done: (socket: Socket, result: FirstLine<ServiceMessage>) => void;
}

/**
 * The connections to the control and data ports that have not sent their first line
 * (or their PROOF) yet, oldest first: each read is bounded in time, and their number
 * is bounded by evicting the oldest.
 *
 * Every read has the same time limit, so the Map's insertion order is also the order
 * they fall due in: one timer, armed for the oldest, serves them all, where a timer
 * per connection would cost every data connection a timer set and cleared.
 */
export class Handshakes {
  readonly #timeoutMs: number;
  readonly #refusals: Refusals;
  readonly #pending = new Map<Socket, Handshake>();
  #timer: NodeJS.Timeout | undefined;
  readonly #finished = (socket: Socket, result: FirstLine<ServiceMessage>): void => {
    const handshake = this.#pending.get(socket);
    this.#pending.delete(socket);
    handshake?.done(socket, result);
  };

  constructor(timeoutMs: number, refusals: Refusals) {
    this.#timeoutMs = timeoutMs;
    this.#refusals = refusals;
  }

  /** Reads the next line of a connection still in its handshake: counted, bounded in time, evictable. */
  read(socket: Socket, head: Buffer | undefined, done: (socket: Socket, result: FirstLine<ServiceMessage>) => void): void {
    if (this.#pending.size >= MAX_HANDSHAKES) this.#evictOldest();
    const handshake: Handshake = { startedAt: performance.now(), done };
    this.#pending.set(socket, handshake);
    if (this.#timer === undefined) this.#armFor(handshake);
    readFirstLineThen(socket, parseServiceLine, head, this.#finished);
  }

  /** read() as a promise. */
  readLine(socket: Socket, head?: Buffer): Promise<FirstLine<ServiceMessage>> {
    return new Promise((resolve) => this.read(socket, head, (_socket, result) => resolve(result)));
  }

  /** Shutdown: every connection still in its handshake is dropped. */
  destroyAll(): void {
    for (const socket of this.#pending.keys()) socket.destroy();
  }

  #evictOldest(): void {
    const oldest = this.#pending.keys().next().value as Socket | undefined;
    if (oldest === undefined) return;
    this.#refusals.count('handshakes', { peer: oldest.remoteAddress }, `connection dropped: oldest of ${MAX_HANDSHAKES} handshakes in progress`);
    oldest.destroy();
    // At once, not at its 'close': the next connection must find the room this one left.
    endFirstLine(oldest, EVICTED);
  }

  // Unref'd: the sockets it watches keep the process alive, and a timer left armed after
  // the last of them must not. Node rounds timers down, so it may wake early and arm again.
  #armFor(oldest: Handshake): void {
    const dueIn = Math.max(1, oldest.startedAt + this.#timeoutMs - performance.now());
    this.#timer = setTimeout(() => this.#expireDue(), dueIn).unref();
  }

  #expireDue(): void {
    this.#timer = undefined;
    const now = performance.now();
    const due: Socket[] = [];
    for (const [socket, { startedAt }] of this.#pending) {
      if (now - startedAt < this.#timeoutMs) break;
      due.push(socket);
    }
    const timedOut = firstLineTimeout(this.#timeoutMs);
    for (const socket of due) endFirstLine(socket, timedOut);
    const next = this.#pending.values().next();
    if (!next.done && this.#timer === undefined) this.#armFor(next.value);
  }
}
