import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { systemClock, type Clock } from '../clock.js';
import { KEEPALIVE_DELAY_MS, RELAY_DEFAULTS, type RelayOptions } from '../config/defaults.js';
import { silentLogger, type Logger } from '../log.js';
import { validateRelayOptions } from '../config/rules.js';
import { readFirstLine, refuse, refusalReply, type FirstLine } from '../net/lines.js';
import { ignoreSocketError } from '../net/ignore-error.js';
import { setOnListener } from '../net/listener-options.js';
import { resetSocket } from '../net/splice.js';
import type { ErrorCode, ServiceMessage } from '../protocol/messages.js';
import { parseServiceLine } from '../protocol/parse.js';
import { DialbackRegistry } from './dialbacks.js';
import { FileLeaseStore } from '../leases/file-lease-store.js';
import { noLeaseStore, type LeaseRecord, type LeaseStore } from '../leases/lease-store.js';
import { OpenTunnels } from './open-tunnels.js';
import { ProbeTokens } from './probes.js';
import { PublicAdmission } from './public-admission.js';
import { Overview } from '../monitor/overview.js';
import { acceptFailure, listenOrFail } from '../net/out-of-fds.js';
import { RefusalLog } from '../monitor/refusal-log.js';
import { Registrar, type RegistrarHost } from './registrar.js';
import { tlsAcceptor } from '../net/tls-accept.js';
import type { ServiceSession } from './service-session.js';
import { RelayStats } from '../monitor/stats.js';

/**
 * Connections still in their handshake held at once. Past it the OLDEST is dropped, not
 * the newcomer: a flood of silent connections then only evicts itself, while a real
 * service's dial-back, which completes in a round trip, still gets through. As large as
 * the pending dial-backs one service may have, so a legitimate burst of dial-backs (2000
 * clients at once, tested) is not mistaken for a flood.
 */
const MAX_HANDSHAKES = 4096;

/** Listen backlog: bursts of thousands of clients must queue, not be reset by the kernel. */
const LISTEN_BACKLOG = 4096;

const SERVER_OPTIONS = {
  allowHalfOpen: true,
  pauseOnConnect: true,
  noDelay: true,
  keepAlive: true,
  keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
} as const;


/** What a relay is built from besides its options; tests inject a clock and a store. */
export interface RelayParts {
  clock?: Clock;
  /** Where leases outlive the process; by default a FileLeaseStore when options.stateFile is set. */
  leaseStore?: LeaseStore;
}

/**
 * The relay: accepts services on its control port, gives each a public port, and
 * splices every public client with the data connection its service dials back.
 * Registrations, leases and public ports are the Registrar's; this class owns the
 * listening sockets, the first line of every connection, and the open tunnels.
 */
export class Relay implements RegistrarHost {
  readonly options: RelayOptions;
  readonly log: Logger;
  readonly clock: Clock;
  readonly stats = new RelayStats();
  /** What the dashboard shows; fed below as services, tunnels and refusals come and go. */
  readonly overview = new Overview(this.stats.bytes);
  readonly dialbacks: DialbackRegistry<ServiceSession>;
  readonly probes: ProbeTokens;
  readonly #registrar: Registrar;
  readonly #leaseStore: LeaseStore;
  readonly #refusalLog: RefusalLog;
  readonly #tunnels: OpenTunnels;
  readonly #admission: PublicAdmission;
  readonly #listeners: Server[] = [];
  /** Sockets that have not finished their first line, oldest first. */
  readonly #handshaking = new Set<Socket>();
  #shuttingDown = false;
  #controlPort = 0;
  #dataPort = 0;
  /** During an upgrade: a DATA token unknown here may be the other worker's (see worker-link.ts). */
  passDialBack: ((socket: Socket, token: string, head: Buffer) => boolean) | undefined;

  constructor(options: Partial<RelayOptions> & { port: number }, log: Logger = silentLogger, parts: RelayParts = {}) {
    this.options = validateRelayOptions({ ...RELAY_DEFAULTS, ...options });
    this.log = log;
    this.clock = parts.clock ?? systemClock;
    this.#refusalLog = new RefusalLog(log);
    this.#tunnels = new OpenTunnels(this.stats, this.overview, { idleTimeoutMs: this.options.idleTimeoutMs, clock: this.clock });
    this.#admission = new PublicAdmission(this.options, this.clock, (reason, fields, message) => this.refused(reason, fields, message));
    this.dialbacks = new DialbackRegistry(this.options.dialbackTimeoutMs, (entry) => entry.owner.dialbackExpired(entry), this.clock);
    this.probes = new ProbeTokens(this.clock, this.options.dialbackTimeoutMs);
    const stateFile = this.options.stateFile;
    const store =
      parts.leaseStore ??
      (stateFile === undefined
        ? noLeaseStore
        : new FileLeaseStore({
            file: stateFile,
            graceMs: this.options.resumeGraceMs,
            log,
            clock: this.clock,
            onWriteError: () => this.stats.stateWriteErrors++,
          }));
    this.#leaseStore = store;
    this.#registrar = new Registrar(this, store);
  }

  get controlPort(): number {
    return this.#controlPort;
  }

  get dataPort(): number {
    return this.#dataPort;
  }

  get serviceCount(): number {
    return this.#registrar.services.size;
  }

  /** The registered services now, for status pages and tests. */
  get services(): ReadonlySet<ServiceSession> {
    return this.#registrar.services;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /**
   * Listens on the control port (and the data port when separate), then opens the
   * doors of the leases in the state file. Rejects if a port is taken.
   */
  async start(): Promise<void> {
    try {
      await this.#startListening();
    } catch (err) {
      for (const server of this.#listeners) server.close();
      throw err;
    }
    await this.#registrar.installLeases(await this.#leaseStore.load());
    this.log.info({ controlPort: this.#controlPort, dataPort: this.#dataPort, publicPorts: this.#registrar.portRange }, 'relay listening');
  }

  async #startListening(): Promise<void> {
    const separateData = this.options.dataPort !== undefined && this.options.dataPort !== this.options.port;
    const control = await this.#listen(this.options.port, { control: true, data: !separateData });
    this.#controlPort = (control.address() as { port: number }).port;
    this.#dataPort = this.#controlPort;
    if (separateData) {
      const data = await this.#listen(this.options.dataPort ?? 0, { control: false, data: true });
      this.#dataPort = (data.address() as { port: number }).port;
    }
  }

  async #listen(port: number, accepts: { control: boolean; data: boolean }): Promise<Server> {
    const secure = this.options.tls === undefined ? undefined : tlsAcceptor(this.options.tls, (socket, err) => {
      this.refused('tls', { peer: socket.remoteAddress, err: (err as NodeJS.ErrnoException).code ?? err.message }, 'connection refused: TLS handshake failed');
    });
    const onConnection = (raw: Socket): void => {
      const socket = secure?.(raw) ?? raw;
      this.#onConnection(socket, accepts).catch((err: unknown) => {
        // A bug here must cost one connection, never the relay and its other tunnels.
        this.log.error({ err }, 'unexpected error handling a connection');
        socket.destroy();
      });
    };
    const server = createServer(SERVER_OPTIONS, onConnection);
    this.#listeners.push(server);
    const failed = once(server, 'error');
    server.listen({ port, backlog: LISTEN_BACKLOG, ...(this.options.bind === undefined ? {} : { host: this.options.bind }) });
    await Promise.race([once(server, 'listening'), failed.then(([err]) => Promise.reject(err as Error))]);
    setOnListener(server);
    // Accept failures (EMFILE) must not kill the relay; the server keeps listening.
    server.on('error', (err) => this.#acceptFailed(err));
    return server;
  }

  async #onConnection(socket: Socket, accepts: { control: boolean; data: boolean }): Promise<void> {
    socket.on('error', ignoreSocketError);
    // The peer's address is asked for (a getpeername call) only when a refusal logs it.
    if (this.#shuttingDown) {
      this.refused('shutdown', { peer: socket.remoteAddress }, 'connection dropped: shutting down');
      socket.destroy();
      return;
    }
    const first = await this.readHandshakeLine(socket);
    if (!first.ok) {
      // A peer that half-closed before its line: our sockets allow half-open, so
      // without this it would sit in CLOSE_WAIT for ever.
      if (first.code === 'closed') return void socket.destroy();
      return this.#refuse(socket, first.code, first.reason, socket.remoteAddress, first.spokeHttp);
    }
    const msg = first.msg;
    if (msg.kind === 'HELLO' && accepts.control) return this.#registrar.register(socket, msg, first.rest);
    if (msg.kind === 'DATA' && accepts.data) return this.#dialedBack(socket, msg.token, first.rest);
    if (msg.kind === 'IDLE' && accepts.data) return this.#parkIdle(socket, msg.token, first.rest);
    const expected = accepts.control ? (accepts.data ? 'HELLO, DATA or IDLE' : 'HELLO') : 'DATA or IDLE';
    this.#refuse(socket, 'bad-line', `expected ${expected} as the first line`, socket.remoteAddress);
  }

  /** The next line of a connection still in its handshake: counted, bounded in time, evictable. */
  async readHandshakeLine(socket: Socket, head?: Buffer): Promise<FirstLine<ServiceMessage>> {
    if (this.#handshaking.size >= MAX_HANDSHAKES) this.#evictOldestHandshake();
    this.#handshaking.add(socket);
    const line = await readFirstLine(socket, parseServiceLine, this.options.handshakeTimeoutMs, head);
    this.#handshaking.delete(socket);
    return line;
  }

  #evictOldestHandshake(): void {
    const oldest = this.#handshaking.values().next().value as Socket | undefined;
    if (oldest === undefined) return;
    this.#handshaking.delete(oldest);
    this.refused('handshakes', { peer: oldest.remoteAddress }, `connection dropped: oldest of ${MAX_HANDSHAKES} handshakes in progress`);
    oldest.destroy();
  }

  #refuse(socket: Socket, code: ErrorCode, reason: string, peer: string | undefined, spokeHttp = false): void {
    this.refused(code, { peer }, `connection refused: ${reason}`);
    // A TLS or binary client cannot read a text reply; a line is still harmless.
    refuse(socket, refusalReply(code, reason, spokeHttp));
  }

  /** Listens on a public port; undefined when it is taken, OutOfFdsError when no descriptor is left. */
  async listenPublic(port: number): Promise<Server | undefined> {
    const server = createServer(SERVER_OPTIONS);
    if (!(await listenOrFail(server, { port, backlog: LISTEN_BACKLOG, ...(this.options.bind === undefined ? {} : { host: this.options.bind }) }))) return undefined;
    setOnListener(server);
    server.on('error', (err) => this.#acceptFailed(err, port));
    return server;
  }

  #acceptFailed(err: NodeJS.ErrnoException, port?: number): void {
    const { reason, message } = acceptFailure(err);
    this.refused(reason, { err: err.code ?? err.message, ...(port === undefined ? {} : { port }) }, message);
  }

  #dialedBack(socket: Socket, token: string, head: Buffer, mayPass = true): void {
    const entry = this.dialbacks.take(token);
    // Our own probe tokens first: during an upgrade every unknown token would otherwise go
    // to the old worker, which refuses our probes as bad tokens.
    if (entry === undefined && this.probes.answer(token, socket)) return;
    if (entry === undefined && mayPass && this.passDialBack?.(socket, token, head) === true) return;
    if (entry === undefined) {
      return this.#refuse(socket, 'bad-token', 'unknown, used or expired token', socket.remoteAddress);
    }
    entry.owner.dialedBack(entry, socket, head);
  }

  /** A dial-back that reached the worker serving after this one (during an upgrade). */
  acceptDialBack(socket: Socket, token: string, head: Buffer): void {
    this.#dialedBack(socket, token, head, false);
  }

  #parkIdle(socket: Socket, warmToken: string, head: Buffer): void {
    const session = this.#registrar.sessionByWarmToken(warmToken);
    if (session === undefined) {
      return this.#refuse(socket, 'bad-token', 'unknown prewarm key', socket.remoteAddress);
    }
    if (head.length > 0) {
      return this.#refuse(socket, 'bad-line', 'an idle data connection must wait for CLIENT', socket.remoteAddress);
    }
    if (!session.addIdle(socket)) {
      this.#refuse(socket, 'limit', `over ${this.options.maxWarmPerService} idle data connections`, socket.remoteAddress);
    }
  }

  openTunnel(session: ServiceSession, client: Socket, data: Socket, head: Buffer): void {
    this.#tunnels.open(session.log, session, client, data, head);
  }

  admitPublic(client: Socket, port: number, maxClientsPerIp?: number): boolean {
    return this.#admission.admit(client, port, maxClientsPerIp);
  }

  /** Counts a refusal for metrics and logs it, within the log's rate limit. */
  refused(reason: string, fields: Record<string, unknown>, message: string, log: Logger = this.log): void {
    this.stats.refused(reason);
    this.overview.refused(reason, fields, message);
    this.#refusalLog.warn(reason, fields, message, log);
  }

  /** Every lease this relay holds (live ones with `until: null`), for a successor. */
  leaseSnapshot(): LeaseRecord[] {
    return this.#registrar.leaseSnapshot();
  }

  /** Takes over a predecessor's leases: their doors open now and hold clients. */
  installLeases(records: LeaseRecord[]): Promise<void> {
    return this.#registrar.installLeases(records);
  }

  /** A client a predecessor was holding for one of our leased ports. */
  adoptHeldClient(port: number, client: Socket): void {
    client.on('error', ignoreSocketError);
    this.#admission.adopt(client);
    this.#registrar.adoptHeldClient(port, client);
  }

  /** Stops writing the state file: a successor is about to take it over. */
  pauseStateWrites(): Promise<void> {
    return this.#registrar.pauseLeaseWrites();
  }

  /** The successor did not take over after all: this relay writes the state file again. */
  resumeStateWrites(): void {
    this.#registrar.resumeLeaseWrites();
  }

  /**
   * Hands over to a successor that is already listening: stops accepting, asks every
   * service to register again (REJOIN, or SHUTDOWN to services that do not know it),
   * gives every held client to `handOff`, then lets open tunnels finish (up to drainMs)
   * and cuts what is left. Nothing is refused and no open tunnel is cut early.
   */
  async retire(handOff: (port: number, client: Socket) => void, drainMs = this.options.drainTimeoutMs): Promise<void> {
    await this.#stop(drainMs, (held) => {
      for (const { port, client } of held) handOff(port, client);
    });
  }

  /** SIGHUP: reads the tenants file again (see Registrar.reloadTenants); a no-op without one. */
  reloadTenants(): void {
    this.#registrar.reloadTenants((revoked) => this.#tunnels.cutWhere(revoked));
  }

  /** Cuts every open tunnel now (a reset to both ends); resolves once each has its access-log line. */
  cutTunnels(): Promise<void> {
    return this.#tunnels.cutAll();
  }

  /**
   * Stops accepting, tells every service (SHUTDOWN), lets open tunnels finish for up
   * to drainMs, then cuts what is left. Resolves when everything is closed. Leases
   * are left as they are: with --state, the next start holds every door again.
   */
  async shutdown(drainMs = this.options.drainTimeoutMs): Promise<void> {
    await this.#stop(drainMs);
  }

  async #stop(drainMs: number, handOff?: (held: { port: number; client: Socket }[]) => void): Promise<void> {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    const handingOver = handOff !== undefined;
    this.log.info({ services: this.serviceCount, tunnels: this.stats.tunnelsOpen, drainMs }, handingOver ? 'handing over to a new worker' : 'shutting down');
    await this.#registrar.pauseLeaseWrites();
    const closing = this.#listeners.map((server) => new Promise((resolve) => server.close(resolve)));
    for (const socket of this.#handshaking) socket.destroy();
    const held = this.#registrar.closeAll(handingOver);
    if (handOff !== undefined) handOff(held);
    else for (const { client } of held) resetSocket(client);
    if (!(await this.#tunnels.drain(drainMs))) {
      this.log.warn({ tunnels: this.stats.tunnelsOpen }, 'drain timeout: cutting open tunnels');
      await this.#tunnels.cutAll();
    }
    await Promise.all(closing);
    this.log.info(handingOver ? 'old worker done' : 'relay stopped');
  }
}
