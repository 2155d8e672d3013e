import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { createServer as createTlsServer } from 'node:tls';
import { KEEPALIVE_DELAY_MS, RELAY_DEFAULTS, type RelayOptions } from '../config.js';
import { silentLogger, type Logger } from '../log.js';
import { readFirstLine, refuse, refusalReply, sendMessage } from '../net/lines.js';
import { ignoreSocketError } from '../net/ignore-error.js';
import { newNonce, newToken, verifyProof } from '../protocol/auth.js';
import { PROTOCOL_VERSION, formatMessage, type ErrorCode, type ServiceMessage } from '../protocol/messages.js';
import { DialbackRegistry } from './dialbacks.js';
import { PortPool } from './port-pool.js';
import { OpenTunnels } from './open-tunnels.js';
import { RefusalLog } from './refusal-log.js';
import { ServiceSession, plainAddress, type SessionHost } from './service-session.js';
import { RelayStats } from './stats.js';

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


/**
 * The relay: accepts services on its control port, gives each a public port, and
 * splices every public client with the data connection its service dials back.
 */
export class Relay implements SessionHost {
  readonly options: RelayOptions;
  readonly log: Logger;
  readonly stats = new RelayStats();
  readonly dialbacks: DialbackRegistry<ServiceSession>;
  readonly #ports: PortPool;
  readonly #refusalLog: RefusalLog;
  readonly #services = new Set<ServiceSession>();
  readonly #byWarmToken = new Map<string, ServiceSession>();
  readonly #byResume = new Map<string, ServiceSession>();
  readonly #tunnels: OpenTunnels;
  readonly #listeners: Server[] = [];
  #registering = 0;
  /** Sockets that have not finished their first line, oldest first. */
  readonly #handshaking = new Set<Socket>();
  #nextServiceId = 1;
  #shuttingDown = false;
  #controlPort = 0;
  #dataPort = 0;
  /** During an upgrade: a DATA token unknown here may be the other worker's (see worker-link.ts). */
  passDialBack: ((socket: Socket, token: string, head: Buffer) => boolean) | undefined;

  constructor(options: Partial<RelayOptions> & { port: number }, log: Logger = silentLogger) {
    this.options = { ...RELAY_DEFAULTS, ...options };
    this.log = log;
    this.#refusalLog = new RefusalLog(log);
    this.#tunnels = new OpenTunnels(this.stats);
    this.#ports = new PortPool(options.ports ?? { first: options.port + 1, last: 65535 });
    this.dialbacks = new DialbackRegistry(this.options.dialbackTimeoutMs, (entry) => entry.owner.dialbackExpired(entry));
  }

  get controlPort(): number {
    return this.#controlPort;
  }

  get dataPort(): number {
    return this.#dataPort;
  }

  get serviceCount(): number {
    return this.#services.size;
  }

  /** Listens on the control port (and the data port when separate). Rejects if a port is taken. */
  async start(): Promise<void> {
    try {
      await this.#startListening();
    } catch (err) {
      for (const server of this.#listeners) server.close();
      throw err;
    }
    this.log.info({ controlPort: this.#controlPort, dataPort: this.#dataPort, publicPorts: this.#ports.range }, 'relay listening');
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
    const onConnection = (socket: Socket): void => {
      this.#onConnection(socket, accepts).catch((err: unknown) => {
        // A bug here must cost one connection, never the relay and its other tunnels.
        this.log.error({ err: String(err) }, 'unexpected error handling a connection');
        socket.destroy();
      });
    };
    const tls = this.options.tls;
    const server =
      tls === undefined
        ? createServer(SERVER_OPTIONS, onConnection)
        : createTlsServer({ ...SERVER_OPTIONS, pauseOnConnect: false, ...tls, handshakeTimeout: this.options.handshakeTimeoutMs }, onConnection);
    server.on('tlsClientError', (err: Error, socket: Socket) => {
      this.refused('tls', { peer: socket.remoteAddress, err: (err as NodeJS.ErrnoException).code ?? err.message }, 'connection refused: TLS handshake failed');
    });
    this.#listeners.push(server);
    const failed = once(server, 'error');
    server.listen({ port, backlog: LISTEN_BACKLOG, ...(this.options.bind === undefined ? {} : { host: this.options.bind }) });
    await Promise.race([once(server, 'listening'), failed.then(([err]) => Promise.reject(err as Error))]);
    // Accept failures (EMFILE) must not kill the relay; the server keeps listening.
    server.on('error', (err) => this.refused('accept', { err: (err as NodeJS.ErrnoException).code ?? err.message }, 'accept failed'));
    return server;
  }

  async #onConnection(socket: Socket, accepts: { control: boolean; data: boolean }): Promise<void> {
    socket.on('error', ignoreSocketError);
    const peer = socket.remoteAddress;
    if (this.#shuttingDown) {
      this.refused('shutdown', { peer }, 'connection dropped: shutting down');
      socket.destroy();
      return;
    }
    if (this.#handshaking.size >= MAX_HANDSHAKES) this.#evictOldestHandshake();
    this.#handshaking.add(socket);
    const first = await readFirstLine(socket, this.options.handshakeTimeoutMs);
    this.#handshaking.delete(socket);
    if (!first.ok) {
      // A peer that half-closed before its line: our sockets allow half-open, so
      // without this it would sit in CLOSE_WAIT for ever.
      if (first.code === 'closed') return void socket.destroy();
      return this.#refuse(socket, first.code, first.reason, peer, first.spokeHttp);
    }
    const msg = first.msg as ServiceMessage;
    if (msg.kind === 'HELLO' && accepts.control) return this.#register(socket, msg, first.rest);
    if (msg.kind === 'DATA' && accepts.data) return this.#dialedBack(socket, msg.token, first.rest);
    if (msg.kind === 'IDLE' && accepts.data) return this.#parkIdle(socket, msg.token, first.rest);
    const expected = accepts.control ? (accepts.data ? 'HELLO, DATA or IDLE' : 'HELLO') : 'DATA or IDLE';
    this.#refuse(socket, 'bad-line', `expected ${expected} as the first line`, peer);
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

  async #register(socket: Socket, hello: ServiceMessage & { kind: 'HELLO' }, head: Buffer): Promise<void> {
    const peer = socket.remoteAddress;
    if (hello.version !== PROTOCOL_VERSION) {
      return this.#refuse(socket, 'version', `relay speaks protocol ${PROTOCOL_VERSION}, service sent HELLO ${hello.version}`, peer);
    }
    let rest = head;
    if (this.options.secret !== undefined) {
      const proven = await this.#authenticate(socket, head);
      if (proven === undefined) return;
      rest = proven;
    }
    // Counted only once authenticated, so strangers cannot fill the service slots.
    if (this.#services.size + this.#registering >= this.options.maxServices) {
      return this.#refuse(socket, 'limit', `relay has its maximum of ${this.options.maxServices} services`, peer);
    }
    this.#registering++;
    try {
      const claimed = await this.#claimPublicPort(hello);
      if (claimed === undefined) return this.#refuse(socket, 'limit', 'no free public port in the relay range', peer);
      if (socket.destroyed || this.#shuttingDown) {
        claimed.server.close();
        this.#ports.release(claimed.port);
        if (this.#shuttingDown) this.#refuse(socket, 'shutdown', 'relay is shutting down', peer);
        return;
      }
      this.#startSession(socket, hello, claimed, rest);
    } finally {
      this.#registering--;
    }
  }

  /** Listens on the public port the service asked for, or the lowest free one. */
  async #claimPublicPort(hello: ServiceMessage & { kind: 'HELLO' }): Promise<{ port: number; server: Server } | undefined> {
    // The same service on a new control connection, before the relay noticed the old
    // one die: only the service knows its resume key, so the new connection wins. The
    // old session goes first (even if no port turns out to be free) so its port is free.
    const previous = hello.resume === undefined ? undefined : this.#byResume.get(hello.resume);
    previous?.close('superseded by a new control connection');
    let server: Server | undefined;
    const port = await this.#ports.acquire(
      async (candidate) => (server = await this.#listenPublic(candidate)) !== undefined,
      hello.port,
      hello.resume,
    );
    return port === undefined || server === undefined ? undefined : { port, server };
  }

  #startSession(socket: Socket, hello: ServiceMessage & { kind: 'HELLO' }, claimed: { port: number; server: Server }, rest: Buffer): void {
    const identity = {
      id: `s${this.#nextServiceId++}`,
      port: claimed.port,
      resume: hello.resume ?? newToken(),
      warmToken: hello.warm !== undefined && hello.warm > 0 ? newToken() : undefined,
    };
    const session = new ServiceSession(this, identity, socket, claimed.server);
    this.#services.add(session);
    if (identity.warmToken !== undefined) this.#byWarmToken.set(identity.warmToken, session);
    this.#byResume.set(identity.resume, session);
    this.stats.servicesActive++;
    this.stats.servicesRegistered++;
    const host = this.options.publicHost ?? hello.host ?? plainAddress(socket.localAddress ?? 'localhost');
    session.log.info({ peer: socket.remoteAddress, publicHost: host, asked: hello.port }, 'service registered');
    session.start(
      {
        kind: 'OK',
        host,
        port: claimed.port,
        dataPort: this.#dataPort,
        heartbeatMs: this.options.heartbeatMs,
        resume: identity.resume,
        ...(identity.warmToken === undefined ? {} : { warmToken: identity.warmToken }),
      },
      rest,
    );
  }

  /** AUTH/PROOF; the bytes after PROOF, or undefined when refused. */
  async #authenticate(socket: Socket, head: Buffer): Promise<Buffer | undefined> {
    const nonce = newNonce();
    sendMessage(socket, { kind: 'AUTH', nonce });
    // Until it proves itself the peer is still a handshake: bounded and evictable.
    if (this.#handshaking.size >= MAX_HANDSHAKES) this.#evictOldestHandshake();
    this.#handshaking.add(socket);
    const answer = await readFirstLine(socket, this.options.handshakeTimeoutMs, head);
    this.#handshaking.delete(socket);
    if (!answer.ok) {
      if (answer.code === 'closed') socket.destroy();
      else this.#refuse(socket, answer.code, answer.reason, socket.remoteAddress);
      return undefined;
    }
    if (answer.msg.kind !== 'PROOF' || !verifyProof(this.options.secret ?? '', nonce, answer.msg.mac)) {
      this.#refuse(socket, 'auth', 'authentication failed: wrong or missing secret', socket.remoteAddress);
      return undefined;
    }
    return answer.rest;
  }

  async #listenPublic(port: number): Promise<Server | undefined> {
    const server = createServer(SERVER_OPTIONS);
    const result = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.once('listening', () => resolve(true));
      server.listen({ port, backlog: LISTEN_BACKLOG, ...(this.options.bind === undefined ? {} : { host: this.options.bind }) });
    });
    if (!result) return undefined;
    server.on('error', (err) => this.refused('accept', { err: (err as NodeJS.ErrnoException).code ?? err.message, port }, 'accept failed on public port'));
    return server;
  }

  #dialedBack(socket: Socket, token: string, head: Buffer, mayPass = true): void {
    const entry = this.dialbacks.take(token);
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
    const session = this.#byWarmToken.get(warmToken);
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
    this.#tunnels.open(session.log, client, data, head);
  }

  /** Counts a refusal for metrics and logs it, within the log's rate limit. */
  refused(reason: string, fields: Record<string, unknown>, message: string, log: Logger = this.log): void {
    this.stats.refused(reason);
    this.#refusalLog.warn(reason, fields, message, log);
  }

  sessionClosed(session: ServiceSession): void {
    this.#services.delete(session);
    if (session.warmToken !== undefined) this.#byWarmToken.delete(session.warmToken);
    if (this.#byResume.get(session.resume) === session) this.#byResume.delete(session.resume);
    this.stats.servicesActive--;
    // On shutdown no grace: the relay that restarts has forgotten every key anyway.
    this.#ports.release(session.port, session.resume, this.#shuttingDown ? 0 : this.options.resumeGraceMs);
  }

  /**
   * Stops accepting, tells every service (SHUTDOWN), lets open tunnels finish for up
   * to drainMs, then cuts what is left. Resolves when everything is closed.
   */
  async shutdown(drainMs = this.options.drainTimeoutMs): Promise<void> {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    this.log.info({ services: this.#services.size, tunnels: this.stats.tunnelsOpen, drainMs }, 'shutting down');
    const closing = this.#listeners.map((server) => new Promise((resolve) => server.close(resolve)));
    for (const socket of this.#handshaking) socket.destroy();
    for (const session of [...this.#services]) session.close('relay shutting down', formatMessage({ kind: 'SHUTDOWN' }));
    if (!(await this.#tunnels.drain(drainMs))) {
      this.log.warn({ tunnels: this.stats.tunnelsOpen }, 'drain timeout: cutting open tunnels');
      this.#tunnels.cutAll();
    }
    await Promise.all(closing);
    this.log.info('relay stopped');
  }
}

