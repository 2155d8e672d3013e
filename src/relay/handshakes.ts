import type { Socket } from 'node:net';
import { readFirstLine, type FirstLine } from '../net/lines.js';
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

/**
 * The connections to the control and data ports that have not sent their first line
 * (or their PROOF) yet, oldest first: each read is bounded in time, and their number
 * is bounded by evicting the oldest.
 */
export class Handshakes {
  readonly #timeoutMs: number;
  readonly #refusals: Refusals;
  readonly #pending = new Set<Socket>();

  constructor(timeoutMs: number, refusals: Refusals) {
    this.#timeoutMs = timeoutMs;
    this.#refusals = refusals;
  }

  /** The next line of a connection still in its handshake: counted, bounded in time, evictable. */
  async readLine(socket: Socket, head?: Buffer): Promise<FirstLine<ServiceMessage>> {
    if (this.#pending.size >= MAX_HANDSHAKES) this.#evictOldest();
    this.#pending.add(socket);
    const line = await readFirstLine(socket, parseServiceLine, this.#timeoutMs, head);
    this.#pending.delete(socket);
    return line;
  }

  /** Shutdown: every connection still in its handshake is dropped. */
  destroyAll(): void {
    for (const socket of this.#pending) socket.destroy();
  }

  #evictOldest(): void {
    const oldest = this.#pending.values().next().value as Socket | undefined;
    if (oldest === undefined) return;
    this.#pending.delete(oldest);
    this.#refusals.count('handshakes', { peer: oldest.remoteAddress }, `connection dropped: oldest of ${MAX_HANDSHAKES} handshakes in progress`);
    oldest.destroy();
  }
}
