import type { Server, Socket } from 'node:net';
import type { TenantSpec } from '../access/tenants-file.js';
import { systemClock, type Clock } from '../clock.js';
import { RELAY_DEFAULTS, type RelayOptions } from '../config/defaults.js';
import { validateRelayOptions } from '../config/rules.js';
import { FileLeaseStore } from '../leases/file-lease-store.js';
import { noLeaseStore, type LeaseRecord, type LeaseStore } from '../leases/lease-store.js';
import { silentLogger, type Logger } from '../log.js';
import type { Overview } from '../monitor/overview.js';
import type { RefusalReason } from '../monitor/refusal-reasons.js';
import type { RelayStats } from '../monitor/stats.js';
import { ignoreSocketError } from '../net/ignore-error.js';
import type { FirstLine } from '../net/lines.js';
import { resetSocket } from '../net/splice.js';
import type { TlsAcceptor } from '../net/tls-accept.js';
import { setProxiedEnds } from './client-address.js';
import type { ServiceMessage } from '../protocol/messages.js';
import { RelayContext } from './context.js';
import { dialedBack, type PassDialBack } from './data-connections.js';
import { routeFirstLine, type Accepts } from './first-lines.js';
import { listenForServices, reloadCertificate, serviceTls } from './listeners.js';
import { followFleet } from './fleet-news.js';
import { NamesPorts } from './names-ports.js';
import { Registrar } from './registrar.js';
import type { HeldAtPort } from './public-ports.js';
import type { ServiceSession } from './service-session.js';
import type { UpgradeSide } from './upgrade-side.js';

/** What a relay is built from besides its options; tests inject a clock and a store. */
export interface RelayParts {
  clock?: Clock;
  /** Where leases outlive the process; by default a FileLeaseStore when options.stateFile is set. */
  leaseStore?: LeaseStore;
  /** The tenants file's entries, when the caller has read and checked it already (read once). */
  tenants?: TenantSpec[];
}

// Set in Relay's static block, which alone may reach its private upgrade steps.
let upgradeSideOf: (relay: Relay) => UpgradeSide;

/**
 * The relay: accepts services on its control port, gives each a public port, and
 * splices every public client with the data connection its service dials back. This
 * class owns the control and data listeners and the first line of every connection;
 * registrations, ports and doors are the Registrar's; the tunnels, tokens and counters
 * are in the RelayContext every part shares (docs/architecture.md).
 */
export class Relay {
  readonly #ctx: RelayContext;
  readonly #registrar: Registrar;
  readonly #listeners: Server[] = [];
  /** TLS on the control and data ports; its certificate is replaced by reload(). */
  readonly #tls: TlsAcceptor | undefined;
  /** The shared ports routed by name (--names-port), if any. */
  readonly #names: NamesPorts;
  #controlPort = 0;
  /** During an upgrade: a DATA token unknown here may be the other worker's (see worker-link.ts). */
  #passDialBack: PassDialBack | undefined;

  constructor(options: Partial<RelayOptions> & { port: number }, log: Logger = silentLogger, parts: RelayParts = {}) {
    const checked = validateRelayOptions({ ...RELAY_DEFAULTS, ...options });
    const clock = parts.clock ?? systemClock;
    this.#ctx = new RelayContext(checked, log, clock, { count: () => this.#registrar.services.size, listed: () => this.#registrar.listed() });
    const store = parts.leaseStore ?? this.#fileStore();
    this.#registrar = new Registrar(this.#ctx, store, parts.tenants);
    followFleet(store, this.#registrar);
    this.#tls = serviceTls(this.#ctx);
    this.#names = new NamesPorts(this.#ctx, { local: (host) => this.#registrar.ports.doorOfHost(host), store });
  }

  #fileStore(): LeaseStore {
    const { options, log, clock, stats } = this.#ctx;
    if (options.stateFile === undefined) return noLeaseStore;
    const onWriteError = (): void => void stats.stateWriteErrors++;
    return new FileLeaseStore({ file: options.stateFile, graceMs: options.resumeGraceMs, log, clock, onWriteError });
  }

  get options(): RelayOptions {
    return this.#ctx.options;
  }

  get log(): Logger {
    return this.#ctx.log;
  }

  /** Counters for logs and metrics (`/metrics` renders them). */
  get stats(): RelayStats {
    return this.#ctx.stats;
  }

  /** What the dashboard and `/api/` show. */
  get overview(): Overview {
    return this.#ctx.overview;
  }

  get controlPort(): number {
    return this.#controlPort;
  }

  get dataPort(): number {
    return this.#ctx.dataPort;
  }

  get serviceCount(): number {
    return this.#registrar.services.size;
  }

  /** The registered services now, for status pages and tests. */
  get services(): ReadonlySet<ServiceSession> {
    return this.#registrar.services;
  }

  /**
   * Opens the doors of the leases in the state file (and of `inherited`, a
   * predecessor's), then listens on the control port (and the data port when separate).
   * Leases first: a registration that came before them could take a port reserved for
   * a service that is coming back. Rejects if a port is taken or the state file cannot
   * be used, and then leaves nothing listening.
   */
  async start(inherited: LeaseRecord[] = []): Promise<void> {
    const ports = this.#registrar.ports;
    try {
      await ports.install([...(await ports.loadLeases()), ...inherited]);
      await this.#startListening();
    } catch (err) {
      for (const server of this.#listeners) server.close();
      for (const { client } of ports.closeAll()) resetSocket(client);
      throw err;
    }
    this.log.info({ controlPort: this.#controlPort, dataPort: this.dataPort, publicPorts: this.#registrar.ports.range }, 'relay listening');
  }

  async #startListening(): Promise<void> {
    const { port, dataPort } = this.#ctx.options;
    const separateData = dataPort !== undefined && dataPort !== port;
    const control = await this.#listen(port, { control: true, data: !separateData });
    this.#controlPort = (control.address() as { port: number }).port;
    this.#ctx.dataPort = this.#controlPort;
    if (separateData) {
      const data = await this.#listen(dataPort, { control: false, data: true });
      this.#ctx.dataPort = (data.address() as { port: number }).port;
    }
    this.#listeners.push(...(await this.#names.listen()));
  }

  async #listen(port: number, accepts: Accepts): Promise<Server> {
    // One handler per listener, not a closure per connection.
    const onFirstLine: OnFirstLine = (socket, first) => this.#onFirstLine(socket, first, accepts);
    const server = await listenForServices(this.#ctx, port, this.#tls, (socket) => this.#onConnection(socket, onFirstLine));
    this.#listeners.push(server);
    return server;
  }

  #onConnection(socket: Socket, onFirstLine: OnFirstLine): void {
    socket.on('error', ignoreSocketError);
    // The peer's address is asked for (a getpeername call) only when a refusal logs it.
    if (this.#ctx.shuttingDown) {
      this.#ctx.refusals.count('shutdown', { peer: socket.remoteAddress }, 'connection dropped: shutting down');
      return void socket.destroy();
    }
    this.#ctx.handshakes.read(socket, undefined, onFirstLine);
  }

  #onFirstLine(socket: Socket, first: FirstLine<ServiceMessage>, accepts: Accepts): void {
    try {
      routeFirstLine(this.#ctx, this.#registrar, socket, first, accepts, this.#passDialBack)?.catch((err: unknown) => this.#failed(socket, err));
    } catch (err) {
      this.#failed(socket, err);
    }
  }

  /** A bug handling a connection must cost that connection, never the relay and its other tunnels. */
  #failed(socket: Socket, err: unknown): void {
    this.log.error({ err }, 'unexpected error handling a connection');
    socket.destroy();
  }

  /** Counts a refusal for metrics and logs it, within the log's rate limit (e.g. the metrics listener's). */
  refused(reason: RefusalReason, fields: Record<string, unknown>, message: string): void {
    this.#ctx.refusals.count(reason, fields, message);
  }

  /** SIGHUP: the tenants file again (see reloadTenants) and the TLS certificate and key (options.tlsFiles); a logged no-op without either. */
  reload(): void {
    const { tenantsFile, tlsFiles } = this.options;
    if (tenantsFile === undefined && tlsFiles === undefined) return void this.log.info('SIGHUP: nothing to reload (the relay runs without --tenants and --tls-cert)');
    if (tenantsFile !== undefined) this.reloadTenants();
    if (tlsFiles !== undefined && this.#tls !== undefined) reloadCertificate(this.#ctx, this.#tls, tlsFiles);
  }

  /** SIGHUP: the tenants file again (Registrar.reloadTenants); tunnels of a revoked tenant, or whose client is now denied, are cut. */
  reloadTenants(): void {
    this.#registrar.reloadTenants((revoked) => {
      const denied = this.#ctx.tunnels.cutWhere((owner, client) => !revoked(owner) && !owner.admits(client));
      const waiting = [...this.#registrar.services].flatMap((session) => this.#ctx.tokens.takeClientsOf(session, (client) => !session.admits(client)));
      for (const { client } of waiting) resetSocket(client);
      if (denied + waiting.length > 0) this.log.info({ tunnels: denied, waiting: waiting.length }, 'tunnels cut: their clients are no longer allowed (tenants file reloaded)');
      this.#ctx.tunnels.cutWhere(revoked);
    });
  }

  /**
   * An exit without a drain: every public client the relay has, held at a door,
   * waiting for its dial-back or spliced, is reset (the exit would close them with a
   * FIN); resolves once every tunnel has its access-log line.
   */
  #cutEverything(): Promise<void> {
    for (const { client } of this.#registrar.ports.closeAll()) resetSocket(client);
    for (const session of this.#registrar.services) for (const { client } of this.#ctx.tokens.takeClientsOf(session)) resetSocket(client);
    return this.cutTunnels();
  }

  /** Cuts every open tunnel now (a reset to both ends); resolves once each has its access-log line. */
  cutTunnels(): Promise<void> {
    return this.#ctx.tunnels.cutAll();
  }

  /**
   * Stops accepting, tells every service (SHUTDOWN), lets open tunnels finish for up
   * to drainMs, then cuts what is left. Resolves when everything is closed. Leases
   * are left as they are: with --state, the next start holds every door again.
   */
  async shutdown(drainMs = this.options.drainTimeoutMs): Promise<void> {
    await this.#stop(drainMs);
  }

  async #stop(drainMs: number, handOff?: (held: HeldAtPort[]) => void): Promise<void> {
    const ctx = this.#ctx;
    if (ctx.shuttingDown) return;
    ctx.shuttingDown = true;
    const handingOver = handOff !== undefined;
    this.log.info({ services: this.serviceCount, tunnels: ctx.tunnels.size, drainMs }, handingOver ? 'handing over to a new worker' : 'shutting down');
    await this.#registrar.ports.pauseWrites();
    const closing = this.#listeners.map((server) => new Promise((resolve) => server.close(resolve)));
    ctx.handshakes.destroyAll();
    this.#names.resetAll();
    const held = this.#registrar.closeAll(handingOver);
    if (handOff !== undefined) handOff(held);
    else for (const { client } of held) resetSocket(client);
    if (!(await ctx.tunnels.drain(drainMs))) {
      this.log.warn({ tunnels: ctx.tunnels.size }, 'drain timeout: cutting open tunnels');
      await ctx.tunnels.cutAll();
    }
    await Promise.all(closing);
    this.log.info(handingOver ? 'old worker done' : 'relay stopped');
  }

  /** The steps of a hitless upgrade, for the worker's master link only (not part of the public API). */
  static {
    upgradeSideOf = (relay: Relay): UpgradeSide => relay.#upgradeSide();
  }

  #upgradeSide(): UpgradeSide {
    const relay = this;
    const ports = this.#registrar.ports;
    return {
      get stats() {
        return relay.stats;
      },
      get controlPort() {
        return relay.controlPort;
      },
      get dataPort() {
        return relay.dataPort;
      },
      leaseSnapshot: (): LeaseRecord[] => ports.snapshot(),
      installLeases: (records) => ports.install(records),
      pauseStateWrites: () => ports.pauseWrites(),
      resumeStateWrites: () => ports.resumeWrites(),
      retire: (handOff, drainMs = this.options.drainTimeoutMs) => this.#stop(drainMs, (held) => held.forEach(({ port, client }) => handOff(port, client))),
      adoptHeldClient: (port, client, proxied) => {
        client.on('error', ignoreSocketError);
        if (proxied !== undefined) setProxiedEnds(client, proxied);
        ports.adoptHeldClient(port, client);
      },
      get passDialBack() {
        return relay.#passDialBack;
      },
      set passDialBack(pass) {
        relay.#passDialBack = pass;
      },
      acceptDialBack: (socket, token, head) => dialedBack(this.#ctx, socket, token, head, undefined),
      acceptMember: (socket, head) => this.#ctx.handshakes.read(socket, head, (s, first) => this.#onFirstLine(s, first, { control: true, data: false })),
      shutdown: (drainMs) => this.shutdown(drainMs),
      cutEverything: () => this.#cutEverything(),
      reload: () => this.reload(),
    };
  }
}

type OnFirstLine = (socket: Socket, first: FirstLine<ServiceMessage>) => void;

/** The upgrade steps of a relay, for the worker's master link; not exported by the package. */
export function upgradeSide(relay: Relay): UpgradeSide {
  return upgradeSideOf(relay);
}
