import type { Socket } from 'node:net';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { OpenConnections } from '../net/open-connections.js';
import { resetSocket, spliceThen, type SpliceResult } from '../net/splice.js';
import { clientAddressOf } from './client-address.js';
import { IdleSweep } from './idle-sweep.js';
import type { Overview, TunnelOwner } from '../monitor/overview.js';
import type { RelayStats } from '../monitor/stats.js';

/** How long cutting the tunnels may take before shutdown goes on without their log lines. */
const CUT_SETTLE_MS = 2_000;

/** What an open tunnel keeps besides its sockets: little, as thousands may be open. */
interface Tunnel {
  owner: TunnelOwner;
  log: Logger;
  client: Socket;
  data: Socket;
}

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
  /** With --idle-timeout: finds the tunnels to cut; those cut so far until their line is written. */
  readonly #idleSweep: IdleSweep<Socket> | undefined;
  readonly #timedOut = new Set<Socket>();
  /** Every open tunnel by its public client, so one owner's tunnels can be cut. */
  readonly #tunnels = new Map<Socket, Tunnel>();

  constructor(stats: RelayStats, overview: Overview, idle: { idleTimeoutMs: number; clock: Clock }) {
    this.#stats = stats;
    this.#overview = overview;
    if (idle.idleTimeoutMs > 0) this.#idleSweep = new IdleSweep(idle.idleTimeoutMs, idle.clock, (client) => this.#timeOut(client));
  }

  open(log: Logger, owner: TunnelOwner, client: Socket, data: Socket, head: Buffer): void {
    this.#open.add(client);
    this.#open.add(data);
    const tunnel: Tunnel = { owner, log, client, data };
    this.#tunnels.set(client, tunnel);
    this.#stats.tunnelOpened();
    const totals = this.#overview.tunnelOpened(owner);
    const counts = { a: 0, b: 0 };
    this.#idleSweep?.watch(client, counts);
    spliceThen(client, data, { headFromB: head, totals, counts }, (result) => this.#closed(tunnel, result));
  }

  #closed({ owner, log, client, data }: Tunnel, result: SpliceResult): void {
    this.#stats.tunnelClosed();
    this.#idleSweep?.forget(client);
    const timedOut = this.#timedOut.delete(client);
    // net.Socket keeps the peer address it read (admission and takeClient read it), so a
    // closed socket still has it.
    const from = clientAddressOf(client);
    const closed = {
      client: from === undefined ? undefined : `${from.address}:${from.port}`,
      bytesFromClient: result.bytesAToB,
      bytesToClient: result.bytesBToA,
      durationMs: result.durationMs,
      closedBy: timedOut ? 'relay' : result.closedFirst === 'a' ? 'client' : 'service',
      outcome: timedOut ? 'idle-timeout' : result.outcome,
      ...(result.error === undefined ? {} : { error: result.error }),
    } as const;
    this.#overview.tunnelClosed(owner, closed);
    log.info(closed, 'tunnel closed');
    // Only now: whoever waits for the tunnels to end (a shutdown about to exit) must
    // find every line written.
    this.#tunnels.delete(client);
    this.#open.delete(client);
    this.#open.delete(data);
  }

  /** Resets an idle tunnel's client; the splice then resets its data connection too. */
  #timeOut(client: Socket): void {
    this.#timedOut.add(client);
    this.#stats.tunnelsIdleTimedOut++;
    resetSocket(client);
  }

  /** Resets both ends of every open tunnel whose owner matches (its tenant was revoked). */
  cutWhere(matches: (owner: TunnelOwner) => boolean): void {
    for (const { owner, client, data } of [...this.#tunnels.values()]) {
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
