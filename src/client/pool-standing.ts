import type { PoolMessage } from './control.js';
import type { ClientGate } from './data-path.js';
import type { RelayClientOptions } from './options.js';

/** Where a pool member's messages go: a control connection, which drops them unless its relay listed `pool` (`pooled`). */
interface PoolChannel {
  readonly pooled: boolean;
  sendPool(msg: PoolMessage): void;
}

/**
 * What a pool member has told its relays (docs/protocol.md §17). A registration starts
 * ready and up on the relay's side, so each new one (a reconnect, another fleet node) is
 * told again what still holds: draining, target down.
 */
export class PoolStanding {
  #draining = false;
  #health: 'up' | 'down' = 'up';

  get health(): 'up' | 'down' {
    return this.#health;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /**
   * How a CONNECT on `channel` is answered: as ever when its relay knows no pools; else
   * put to the program's `admit` first, or declined at once while the target is down.
   */
  gate(channel: PoolChannel, token: string, admit: RelayClientOptions['admit']): ClientGate | undefined {
    if (!channel.pooled) return undefined;
    const decline = (): void => channel.sendPool({ kind: 'DECLINE', token });
    if (this.#health === 'down') return { admit: () => 'decline', decline };
    return admit === undefined ? undefined : { admit, decline };
  }

  /** Tells a control connection that has just registered. */
  greet(channel: PoolChannel): void {
    if (this.#health === 'down') channel.sendPool({ kind: 'HEALTH', state: 'down' });
    if (this.#draining) channel.sendPool({ kind: 'DRAIN' });
  }

  /** From now on no new clients; `channel`, if registered, hears it now. */
  drain(channel: PoolChannel | undefined): void {
    if (this.#draining) return;
    this.#draining = true;
    channel?.sendPool({ kind: 'DRAIN' });
  }

  /** The program's own target went down or came back; said only on a change. */
  setHealth(state: 'up' | 'down', channel: PoolChannel | undefined): void {
    if (state === this.#health) return;
    this.#health = state;
    channel?.sendPool({ kind: 'HEALTH', state });
  }
}
