import type { Server, Socket } from 'node:net';
import type { RefusalReason } from '../monitor/refusal-reasons.js';
import { ignoreSocketError } from '../net/ignore-error.js';
import { refuse } from '../net/lines.js';
import { readClientPrelude, type PreludeRead } from '../net/read-prelude.js';
import { resetSocket } from '../net/splice.js';
import { plainAddress } from '../protocol/addresses.js';
import { clientHost, hostCandidates } from '../protocol/names.js';
import { notFoundResponse, UNRECOGNIZED_NAME_ALERT } from '../protocol/prelude.js';
import type { LeaseStore } from '../leases/lease-store.js';
import type { RelayContext } from './context.js';
import { listenForServices } from './listeners.js';
import type { PublicDoor } from './public-door.js';

/**
 * Clients reading their prelude at once. Past it the oldest is reset, as for handshakes
 * on the control port: a flood of silent connections evicts only itself.
 */
const MAX_PRELUDES = 4096;

/** Where a names-port client's host leads: a door of this process, or (one of several workers) another worker's. */
export interface NameRoutes {
  /** The door for a host here: exact, else the longest wildcard. */
  local(host: string): PublicDoor | undefined;
  store: Pick<LeaseStore, 'hostElsewhere' | 'handOver'>;
}

/**
 * The shared public ports routed by name (`--names-port`, docs/protocol.md §18). A client
 * is admitted as on any public port (the relay-wide per-address limits; its tenant's
 * `maxClientsPerIp` once its name is known), then read without an answer until its TLS SNI or HTTP Host names a host; the door of the service that
 * registered that host (exact, else the longest wildcard) gets it, with the bytes read
 * put back first, and serves it as it serves a client of its own port: to the service,
 * or held while the service is away.
 */
export class NamesPorts {
  readonly #ctx: RelayContext;
  readonly #routes: NameRoutes;
  readonly #reading = new Set<Socket>();

  constructor(ctx: RelayContext, routes: NameRoutes) {
    this.#ctx = ctx;
    this.#routes = routes;
  }

  /** Listens on every names port; rejects (and leaves none listening) if one cannot be had. */
  async listen(): Promise<Server[]> {
    const servers: Server[] = [];
    try {
      for (const port of this.#ctx.options.namesPorts ?? []) {
        servers.push(await listenForServices(this.#ctx, port, undefined, (client) => this.#onClient(client, port)));
      }
    } catch (err) {
      for (const server of servers) server.close();
      throw err;
    }
    return servers;
  }

  /** Shutdown: clients still naming their host are reset. */
  resetAll(): void {
    for (const client of this.#reading) resetSocket(client);
    this.#reading.clear();
  }

  #onClient(client: Socket, port: number): void {
    client.on('error', ignoreSocketError);
    if (this.#ctx.shuttingDown) return resetSocket(client);
    const { admission } = this.#ctx;
    if (!admission.viaBalancer(client)) return this.#admitted(client, port);
    void admission.fromBalancer(client, port).then((ok) => ok && this.#admitted(client, port));
  }

  /** After the PROXY header (if any): the relay's lists and the per-address limits, then the prelude names the door. */
  #admitted(client: Socket, port: number): void {
    const { admission } = this.#ctx;
    if (!admission.permits(client, port, []) || !admission.admit(client, port, undefined)) return;
    if (this.#reading.size >= MAX_PRELUDES) this.#evictOldest();
    this.#reading.add(client);
    readClientPrelude(client, this.#ctx.options.handshakeTimeoutMs).then(
      (read) => {
        if (!this.#reading.delete(client)) return; // evicted, or reset by a shutdown
        if (!read.ok) return read.why === 'closed' ? void client.destroy() : this.#refuse(client, read.why, read.detail);
        const host = read.host === undefined ? undefined : clientHost(read.host);
        const door = host === undefined ? undefined : this.#routes.local(host);
        const { store } = this.#routes;
        // With several workers, the host (or a more specific wildcard) may be another's.
        if (host === undefined || door?.place === host || store.hostElsewhere === undefined) return this.#serve(client, port, read, door, host);
        void store.hostElsewhere(hostCandidates(host)).then((elsewhere) => {
          if (client.destroyed) return;
          if (elsewhere === undefined || store.handOver === undefined) return this.#serve(client, port, read, door, host);
          client.unshift(read.bytes);
          this.#ctx.stats.namesClientsPassed++;
          store.handOver(elsewhere, client);
        });
      },
      (err: unknown) => {
        this.#ctx.log.error({ err }, 'unexpected error reading a names-port prelude');
        resetSocket(client);
      },
    );
  }

  #serve(client: Socket, port: number, read: Extract<PreludeRead, { ok: true }>, door: PublicDoor | undefined, host: string | undefined): void {
    if (door === undefined) return this.#unknown(client, read.kind, host ?? read.host);
    if (!this.#ctx.admission.admitNamed(client, port, door.maxClientsPerIp)) return;
    client.unshift(read.bytes);
    // The tenant's and the service's lists are known only now that the name is.
    if (door.permits(client)) door.arrive(client);
  }

  /** No service has the host: TLS gets the fatal alert unrecognized_name, HTTP a 404, then a close. */
  #unknown(client: Socket, kind: 'tls' | 'http', host: string | undefined): void {
    const named = host === undefined ? 'no host named' : `unknown host ${host.slice(0, 100)}`;
    this.#count('unknown-name', client, `names-port client refused: ${named}`);
    refuse(client, kind === 'tls' ? UNRECOGNIZED_NAME_ALERT : notFoundResponse(host?.slice(0, 253)));
  }

  /** Too slow, too long or not TLS or HTTP: a reset, as for every public client refused before it was served. */
  #refuse(client: Socket, reason: RefusalReason, detail: string): void {
    this.#count(reason, client, `names-port client reset: ${detail}`);
    resetSocket(client);
  }

  #count(reason: RefusalReason, client: Socket, message: string): void {
    const address = client.remoteAddress;
    this.#ctx.refusals.count(reason, { client: address === undefined ? undefined : plainAddress(address), namesPort: client.localPort }, message);
  }

  #evictOldest(): void {
    const oldest = this.#reading.values().next().value as Socket | undefined;
    if (oldest === undefined) return;
    this.#reading.delete(oldest);
    this.#refuse(oldest, 'handshakes', `oldest of ${MAX_PRELUDES} clients naming their host`);
  }
}
