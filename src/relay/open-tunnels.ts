import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { resetSocket, splice } from '../net/splice.js';
import type { Overview, TunnelOwner } from './overview.js';
import { clientAddressOf } from './service-session.js';
import type { RelayStats } from './stats.js';

/**
 * Every spliced public client and data connection the relay has open: starts each
 * splice, writes its one access-log line when it ends, and lets shutdown wait for them
 * all, or cut what is left. Tunnels belong to the relay, not to a session, so a
 * service's control reconnect never ends them.
 */
export class OpenTunnels {
  readonly #stats: RelayStats;
  readonly #overview: Overview;
  readonly #sockets = new Set<Socket>();
  #onEmpty: (() => void) | undefined;

  constructor(stats: RelayStats, overview: Overview) {
    this.#stats = stats;
    this.#overview = overview;
  }

  open(log: Logger, owner: TunnelOwner, client: Socket, data: Socket, head: Buffer): void {
    this.#sockets.add(client);
    this.#sockets.add(data);
    this.#stats.tunnelOpened();
    const totals = [this.#stats.bytes, ...this.#overview.tunnelOpened(owner)];
    const from = clientAddressOf(client);
    void splice(client, data, { headFromB: head, totals }).then((result) => {
      this.#sockets.delete(client);
      this.#sockets.delete(data);
      this.#stats.tunnelClosed();
      if (this.#sockets.size === 0) this.#onEmpty?.();
      const closed = {
        client: from === undefined ? undefined : `${from.address}:${from.port}`,
        bytesFromClient: result.bytesAToB,
        bytesToClient: result.bytesBToA,
        durationMs: result.durationMs,
        closedBy: result.closedFirst === 'a' ? 'client' : 'service',
        outcome: result.outcome,
        ...(result.error === undefined ? {} : { error: result.error }),
      } as const;
      this.#overview.tunnelClosed(owner, closed);
      log.info(closed, 'tunnel closed');
    });
  }

  /** Resolves true when every tunnel has ended by itself, false when drainMs passed first. */
  async drain(drainMs: number): Promise<boolean> {
    const empty = new Promise<true>((resolve) => {
      this.#onEmpty = () => resolve(true);
      if (this.#sockets.size === 0) resolve(true);
    });
    const deadline = new Promise<false>((resolve) => setTimeout(() => resolve(false), drainMs).unref());
    return Promise.race([empty, deadline]);
  }

  cutAll(): void {
    for (const socket of this.#sockets) resetSocket(socket);
  }
}
