import type { Socket } from 'node:net';
import type { RelayStats } from '../monitor/stats.js';
import { refuse, refusalReply, sendMessage } from '../net/lines.js';
import { takeWaitingBytes } from '../net/waiting-bytes.js';
import type { Message } from '../protocol/messages.js';

/** --max-warm and --max-warm-total. */
interface WarmLimits {
  readonly maxWarmPerService: number;
  readonly maxWarmTotal: number;
}

/** Whether this relay parks prewarmed connections at all: with either limit at 0 it gives no prewarm key. */
export function prewarmAllowed(limits: WarmLimits): boolean {
  return limits.maxWarmPerService > 0 && limits.maxWarmTotal > 0;
}

/**
 * One service's prewarmed data connections (IDLE): parked, read only to notice that
 * they close or misbehave, and handed out oldest first to the next public client, which
 * then needs no dial-back.
 */
export class WarmConnections {
  readonly #idle = new Set<Socket>();
  readonly #stats: RelayStats;
  readonly #limits: WarmLimits;

  constructor(stats: RelayStats, limits: WarmLimits) {
    this.#stats = stats;
    this.#limits = limits;
  }

  /**
   * Parks a connection; else says which limit it is over: this service's, or the relay's
   * across all services (stats.warmIdle counts every service's parked connections).
   */
  park(socket: Socket): string | undefined {
    const { maxWarmPerService, maxWarmTotal } = this.#limits;
    if (this.#idle.size >= maxWarmPerService) return `over ${maxWarmPerService} idle data connections`;
    if (this.#stats.warmIdle >= maxWarmTotal) return `over ${maxWarmTotal} idle data connections in all`;
    this.#idle.add(socket);
    this.#stats.warmIdle++;
    // A parked connection must stay silent; reading it is how its close is noticed.
    (socket as ParkedSocket)[kParkedAt] = this;
    socket.on('data', onParkedData);
    socket.on('end', onParkedEnd);
    socket.on('close', onParkedClose);
    socket.resume();
    return undefined;
  }

  /**
   * Hands a public client the oldest parked connection, if there is one: `splice` joins
   * them while the CLIENT line is held (corked), so the line and the bytes the client has
   * sent so far leave in one write, at once. A client whose server speaks first is not
   * kept waiting for bytes that will not come. True when the client was dealt with.
   */
  serve(client: Socket, lineFor: () => Message | undefined, splice: (idle: Socket, early: Buffer) => void): boolean {
    const idle = this.#take();
    if (idle === undefined) return false;
    // Built only now that a connection takes it (no line: the client's address is gone with it).
    const line = lineFor();
    const early = line === undefined ? 'reset' : takeWaitingBytes(client);
    if (line === undefined || early === 'reset') {
      // Gone before it was served: the parked connection never heard of it and waits on.
      if (this.park(idle) !== undefined) idle.destroy();
      client.destroy();
      return true;
    }
    idle.cork();
    sendMessage(idle, line);
    splice(idle, early);
    idle.uncork();
    return true;
  }

  /** The oldest parked connection still usable, no longer parked (paused, its listeners off). */
  #take(): Socket | undefined {
    for (const socket of this.#idle) {
      this.forget(socket);
      if (socket.destroyed || !socket.writable) continue;
      socket.pause();
      socket.off('data', onParkedData);
      socket.off('end', onParkedEnd);
      socket.off('close', onParkedClose);
      (socket as ParkedSocket)[kParkedAt] = undefined;
      return socket;
    }
    return undefined;
  }

  /** The registration ended: every parked connection is closed. */
  closeAll(): void {
    for (const socket of this.#idle) {
      this.forget(socket);
      socket.destroy();
    }
  }

  /** No longer parked here (taken, closed, or misbehaving). */
  forget(socket: Socket): void {
    if (this.#idle.delete(socket)) this.#stats.warmIdle--;
  }
}

// The listeners of a parked connection are shared by all of them and find their pool on
// the socket: three closures per connection would be made for every client's replacement.
const kParkedAt = Symbol('parked at');
type ParkedSocket = Socket & { [kParkedAt]?: WarmConnections | undefined };

function onParkedData(this: ParkedSocket): void {
  this[kParkedAt]?.forget(this);
  refuse(this, refusalReply('bad-line', 'an idle data connection must wait for CLIENT'));
}

function onParkedEnd(this: ParkedSocket): void {
  this.destroy();
}

function onParkedClose(this: ParkedSocket): void {
  this[kParkedAt]?.forget(this);
}
