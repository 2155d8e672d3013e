import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { OpenConnections } from '../net/open-connections.js';
import { resetSocket, splice } from '../net/splice.js';
import { clientAddressOf } from './client-address.js';
import type { Overview, TunnelOwner } from './overview.js';
import type { RelayStats } from './stats.js';

/** How long cutting the tunnels may take before shutdown goes on without their log lines. */
const CUT_SETTLE_MS = 2_000;

/**
 * Every spliced public client and data connection the relay has open: starts each
 * splice, writes its one access-log line when it ends, and lets shutdown wait for them
 * all, or cut what is left. Tunnels belong to the relay, not to a session, so a
 * service's control reconnect never ends them.
 */
export class OpenTunnels {
  readonly #stats: RelayStats;
  readonly #overview: Overview;
  /** Both sockets of every tunnel, until its access-log line is written. */
  readonly #open = new OpenConnections();
  /** Each open tunnel's owner, by its public client, so one owner's tunnels can be cut. */
  readonly #owners = new Map<Socket, { owner: TunnelOwner; data: Socket }>();

  constructor(stats: RelayStats, overview: Overview) {
    this.#stats = stats;
    this.#overview = overview;
  }

  open(log: Logger, owner: TunnelOwner, client: Socket, data: Socket, head: Buffer): void {
    this.#open.add(client);
    this.#open.add(data);
    this.#owners.set(client, { owner, data });
    this.#stats.tunnelOpened();
    const totals = [this.#stats.bytes, ...this.#overview.tunnelOpened(owner)];
    const from = clientAddressOf(client);
    void splice(client, data, { headFromB: head, totals }).then((result) => {
      this.#stats.tunnelClosed();
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
      // Only now: whoever waits for the tunnels to end (a shutdown about to exit) must
      // find every line written.
      this.#owners.delete(client);
      this.#open.delete(client);
      this.#open.delete(data);
    });
  }

  /** Resets both ends of every open tunnel whose owner matches (its tenant was revoked). */
  cutWhere(matches: (owner: TunnelOwner) => boolean): void {
    for (const [client, { owner, data }] of [...this.#owners]) {
      if (!matches(owner)) continue;
      resetSocket(client);
      resetSocket(data);
    }
  }

  /** Resolves true when every tunnel has ended by itself, false when drainMs passed first. */
  drain(drainMs: number): Promise<boolean> {
    return this.#open.whenEmpty(drainMs);
  }

  /** Resets every open tunnel (both ends) and resolves once each has its access-log line. */
  async cutAll(): Promise<void> {
    await this.#open.resetAll(CUT_SETTLE_MS);
  }
}
