import type { Socket } from 'node:net';
import type { RelayStats } from '../monitor/stats.js';
import { refuse, refusalReply } from '../net/lines.js';

/**
 * One service's prewarmed data connections (IDLE): parked, read only to notice that
 * they close or misbehave, and handed out oldest first to the next public client, which
 * then needs no dial-back.
 */
export class WarmConnections {
  readonly #idle = new Set<Socket>();
  readonly #stats: RelayStats;
  readonly #max: number;

  constructor(stats: RelayStats, max: number) {
    this.#stats = stats;
    this.#max = max;
  }

  /** Parks a connection; false when the service already has its maximum. */
  park(socket: Socket): boolean {
    if (this.#idle.size >= this.#max) return false;
    this.#idle.add(socket);
    this.#stats.warmIdle++;
    // A parked connection must stay silent; reading it is how its close is noticed.
    socket.on('data', () => {
      this.#forget(socket);
      refuse(socket, refusalReply('bad-line', 'an idle data connection must wait for CLIENT'));
    });
    socket.once('end', () => socket.destroy());
    socket.once('close', () => this.#forget(socket));
    socket.resume();
    return true;
  }

  /** The oldest parked connection still usable, no longer parked (paused, its listeners off). */
  take(): Socket | undefined {
    for (const socket of this.#idle) {
      this.#forget(socket);
      if (socket.destroyed || !socket.writable) continue;
      socket.pause();
      socket.removeAllListeners('data');
      socket.removeAllListeners('end');
      return socket;
    }
    return undefined;
  }

  /** The registration ended: every parked connection is closed. */
  closeAll(): void {
    for (const socket of this.#idle) {
      this.#forget(socket);
      socket.destroy();
    }
  }

  #forget(socket: Socket): void {
    if (this.#idle.delete(socket)) this.#stats.warmIdle--;
  }
}
