import type { Socket } from 'node:net';
import { FirstLineDeadlines } from '../net/first-line-deadlines.js';
import { endFirstLine, readFirstLineThen, type FirstLine } from '../net/lines.js';
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

type Done = (socket: Socket, result: FirstLine<ServiceMessage>) => void;

/**
 * The connections to the control and data ports that have not sent their first line
 * (or their PROOF) yet, oldest first: each read is bounded in time (one timer for all,
 * see FirstLineDeadlines), and their number is bounded by evicting the oldest.
 */
export class Handshakes {
  readonly #refusals: Refusals;
  readonly #deadlines: FirstLineDeadlines;
  /** Who gets each connection's line, oldest first. */
  readonly #pending = new Map<Socket, Done>();
  readonly #finished: Done = (socket, result) => {
    const done = this.#pending.get(socket);
    this.#pending.delete(socket);
    this.#deadlines.forget(socket);
    done?.(socket, result);
  };

  constructor(timeoutMs: number, refusals: Refusals) {
    this.#deadlines = new FirstLineDeadlines(timeoutMs);
    this.#refusals = refusals;
  }

  /** Reads the next line of a connection still in its handshake: counted, bounded in time, evictable. */
  read(socket: Socket, head: Buffer | undefined, done: Done): void {
    if (this.#pending.size >= MAX_HANDSHAKES) this.#evictOldest();
    this.#pending.set(socket, done);
    this.#deadlines.watch(socket);
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
}
