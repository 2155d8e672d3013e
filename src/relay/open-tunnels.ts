import type { Socket } from 'node:net';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { Overview, TunnelOwner } from '../monitor/overview.js';
import type { RelayStats } from '../monitor/stats.js';
import { resetSocket, spliceThen, type SpliceResult } from '../net/splice.js';
import { clientAddressOf } from './client-address.js';
import { IdleSweep } from './idle-sweep.js';

/** How long cutting the tunnels may take before shutdown goes on without their log lines. */
const CUT_SETTLE_MS = 2_000;

/** A tunnel's service, as the tunnels see it. */
export interface TunnelService extends TunnelOwner {
  readonly log: Logger;
  /** Whether who may connect, as loaded now, still lets this client in. */
  admits(client: Socket): boolean;
}

/** What an open tunnel keeps besides its sockets: little, as thousands may be open. */
interface Tunnel {
  owner: TunnelService;
  log: Logger;
  client: Socket;
  data: Socket;
  /**
   * Why the relay, not a peer, ended it: 'idle-timeout' (--idle-timeout) or 'destroyed'
   * (cut at the end of a drain, on a second signal, or when its tenant was revoked).
   * Undefined while only its peers end it.
   */
  cutAs: 'idle-timeout' | 'destroyed' | undefined;
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
  /** Every open tunnel by its public client, until its access-log line is written. */
  readonly #tunnels = new Map<Socket, Tunnel>();
  /** With --idle-timeout: finds the tunnels to cut. */
  readonly #idleSweep: IdleSweep<Tunnel> | undefined;
  /** Woken when the last tunnel has its line: a drain or a cut waiting for the end. */
  #whenEmpty: (() => void)[] = [];

  constructor(stats: RelayStats, overview: Overview, idle: { idleTimeoutMs: number; clock: Clock }) {
    this.#stats = stats;
    this.#overview = overview;
    if (idle.idleTimeoutMs > 0) this.#idleSweep = new IdleSweep(idle.idleTimeoutMs, idle.clock, (tunnel) => this.#timeOut(tunnel));
  }

  /** Tunnels open now. */
  get size(): number {
    return this.#tunnels.size;
  }

  /** Splices a client with its data connection; `head`: bytes already read from the data connection, `clientHead`: from the client. */
  open(owner: TunnelService, client: Socket, data: Socket, head: Buffer, clientHead?: Buffer): void {
    const tunnel: Tunnel = { owner, log: owner.log, client, data, cutAs: undefined };
    this.#tunnels.set(client, tunnel);
    this.#stats.tunnelsOpened++;
    const totals = this.#overview.tunnelOpened(owner);
    const counts = { a: 0, b: 0 };
    this.#idleSweep?.watch(tunnel, counts);
    spliceThen(client, data, { ...(clientHead === undefined ? {} : { headFromA: clientHead }), headFromB: head, totals, counts }, (result) => this.#closed(tunnel, result));
  }

  #closed(tunnel: Tunnel, result: SpliceResult): void {
    const { owner, log, client, cutAs } = tunnel;
    this.#idleSweep?.forget(tunnel);
    // net.Socket keeps the peer address it read (admission and takeClient read it), so a
    // closed socket still has it.
    const from = clientAddressOf(client);
    const closed = {
      client: from === undefined ? undefined : `${from.address}:${from.port}`,
      bytesFromClient: result.bytesAToB,
      bytesToClient: result.bytesBToA,
      durationMs: result.durationMs,
      // A cut resets both ends at once, so the splice cannot tell who went first, and
      // sees sockets already destroyed rather than a failure: the cut itself says it.
      closedBy: cutAs !== undefined ? 'relay' : result.closedFirst === 'a' ? 'client' : 'service',
      outcome: cutAs ?? result.outcome,
      ...(result.error === undefined ? {} : { error: result.error }),
    } as const;
    this.#overview.tunnelClosed(owner, closed);
    log.info(closed, 'tunnel closed');
    // Only now: whoever waits for the tunnels to end (a shutdown about to exit) must
    // find every line written.
    this.#tunnels.delete(client);
    if (this.#tunnels.size === 0) for (const wake of this.#whenEmpty.splice(0)) wake();
  }

  /** Resets an idle tunnel's client; the splice then resets its data connection too. */
  #timeOut(tunnel: Tunnel): void {
    tunnel.cutAs = 'idle-timeout';
    this.#stats.tunnelsIdleTimedOut++;
    resetSocket(tunnel.client);
  }

  /** Resets both ends of a tunnel the relay ends: its line says closedBy relay, outcome destroyed. */
  #cut(tunnel: Tunnel): void {
    // One already ending by itself (a side closed, its line still to come) keeps its own record.
    if (!tunnel.client.destroyed && !tunnel.data.destroyed) tunnel.cutAs ??= 'destroyed';
    resetSocket(tunnel.client);
    resetSocket(tunnel.data);
  }

  /** Resets both ends of every open tunnel that matches (its tenant was revoked, its client no longer allowed); returns how many. */
  cutWhere(matches: (owner: TunnelService, client: Socket) => boolean): number {
    let cut = 0;
    for (const tunnel of [...this.#tunnels.values()]) {
      if (!matches(tunnel.owner, tunnel.client)) continue;
      this.#cut(tunnel);
      cut++;
    }
    return cut;
  }

  /** Resolves true when every tunnel has ended by itself, false when drainMs passed first. */
  drain(drainMs: number): Promise<boolean> {
    if (this.#tunnels.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), drainMs).unref();
      this.#whenEmpty.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /**
   * Resets every open tunnel (both ends: a reset, never a FIN, since a peer that saw a
   * clean end after part of a transfer would take it for the whole) and resolves once
   * each has its access-log line, or after a bound.
   */
  async cutAll(): Promise<void> {
    for (const tunnel of [...this.#tunnels.values()]) this.#cut(tunnel);
    await this.drain(CUT_SETTLE_MS);
  }
}
