import type { Socket } from 'node:net';
import type { Relay } from './relay.js';
import type { UpgradableRelay } from './worker-link.js';
import type { LeaseRecord } from './worker-messages.js';

/**
 * Today's Relay seen as an UpgradableRelay, until the relay keeps leases and holds
 * doors itself: no leases to hand over (a service that registers again asks for its old
 * port, which is free once the old worker has let it go), no state file, nobody held,
 * and retiring is a graceful shutdown (stop accepting, SHUTDOWN every service, drain).
 * Delete this file when Relay implements the interface.
 */
export class RelayStandIn implements UpgradableRelay {
  readonly #relay: Relay;

  constructor(relay: Relay) {
    this.#relay = relay;
  }

  get controlPort(): number {
    return this.#relay.controlPort;
  }

  get dataPort(): number {
    return this.#relay.dataPort;
  }

  get passDialBack(): UpgradableRelay['passDialBack'] {
    return this.#relay.passDialBack;
  }

  set passDialBack(pass: UpgradableRelay['passDialBack']) {
    this.#relay.passDialBack = pass;
  }

  leaseSnapshot(): LeaseRecord[] {
    return [];
  }

  async installLeases(_records: LeaseRecord[]): Promise<void> {}

  async pauseStateWrites(): Promise<void> {}

  resumeStateWrites(): void {}

  retire(_handOff: (port: number, client: Socket) => void, drainMs?: number): Promise<void> {
    return this.#relay.shutdown(drainMs);
  }

  adoptHeldClient(_port: number, client: Socket): void {
    client.destroy(); // nothing is ever held before the relay holds doors
  }

  acceptDialBack(socket: Socket, token: string, head: Buffer): void {
    this.#relay.acceptDialBack(socket, token, head);
  }

  shutdown(drainMs?: number): Promise<void> {
    return this.#relay.shutdown(drainMs);
  }
}
