import { EventEmitter } from 'node:events';
import { isIP, type Server, type Socket } from 'node:net';
import { CLIENT_DEFAULTS, HEARTBEAT_MISSES } from '../config/defaults.js';
import { RegistrationRefusedError, RelayError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { readLines, sendMessage } from '../net/lines.js';
import { computeProof, newToken } from '../protocol/auth.js';
import { PROTOCOL_VERSION, formatMessage, joinHostPort, parseRelayLine, type Feature, type RelayMessage } from '../protocol/messages.js';
import { backoffDelay } from './backoff.js';
import { openDataConnection } from './dial-back.js';
import { FleetMembers } from './fleet-members.js';
import { validateClientOptions, type CloseOptions, type ConnectionTarget, type PublicAddress, type RelayClientOptions } from './options.js';
import { ProbeAnswerer } from './probe.js';
import { loadResumeKey } from './resume-file.js';
import { dialRelay, TlsSessions, type RelayEndpoint } from './transport.js';
import { Timers } from './timers.js';
import { WarmPool } from './warm-pool.js';
import { helloWarm, poolSize } from './warm-sizer.js';

/** Optional messages this library understands; see docs/protocol.md, feature negotiation. */
const FEATURES: Feature[] = ['rejoin', 'leave', 'superseded', 'probe', 'fleet'];

/** How long a LEAVE may take to reach the relay before the connection is dropped anyway. */
const LEAVE_LINGER_MS = 2_000;

interface Registration {
  dataPort: number;
  heartbeatMs: number;
  /** Where every data connection of this registration goes (see #dataEndpointFor). */
  dataEndpoint: RelayEndpoint;
}

/**
 * A program's presence on a relay. Keeps the control connection up (reconnecting with
 * backoff after any loss), answers every dial-back request, and hands each public
 * client to the target as an ordinary socket.
 *
 * Events: `established` (PublicAddress) after every registration; `disconnected`
 * (reason) when the control connection is lost; `error` (Error) when the relay refuses
 * the registration for good (wrong secret, other protocol version), after which it
 * stops; `close` after close().
 */
export class RelayRegistration extends EventEmitter {
  readonly #target: ConnectionTarget;
  readonly #options: RelayClientOptions;
  readonly #log: Logger;
  #control: Socket | undefined;
  #registration: Registration | undefined;
  /** Optional messages the relay said it understands, for the current registration. */
  #relayFeatures = new Set<Feature>();
  /** The relay asked for a new registration at once (an upgrade), not after a backoff. */
  #rejoinNow = false;
  #publicAddress: PublicAddress | undefined;
  #resume: string | undefined;
  #attempt = 0;
  #lastHeard = 0;
  readonly #timers = new Timers();
  /** The prewarmed connections of the current registration, if it asked for any. */
  #warmPool: WarmPool | undefined;
  /** Resumed on every dial-back and reconnect with TLS (see TlsSessions). */
  readonly #tlsSessions = new TlsSessions();
  readonly #counts = { clients: 0, prewarmed: 0 };
  readonly #probes: ProbeAnswerer;
  #closed = false;
  /** Why the relay refused for good, for established() calls that come after. */
  #refusal: Error | undefined;
  /** The registrations with the other nodes of a relay fleet, once there is one. */
  #fleet: FleetMembers | undefined;
  /** The address last announced with `established`, in a fleet. */
  #announced: string | undefined;

  constructor(target: ConnectionTarget, options: RelayClientOptions) {
    super();
    validateClientOptions(options);
    this.#target = target;
    this.#options = options;
    this.#log = options.logger ?? silentLogger;
    this.#probes = new ProbeAnswerer(this.#log, options.handshakeTimeoutMs ?? CLIENT_DEFAULTS.handshakeTimeoutMs);
    if (options.resumeFile !== undefined) this.#resume = loadResumeKey(options.resumeFile);
    if (options.resumeKey !== undefined) this.#resume = options.resumeKey;
    const hosts = options.host.split(',');
    // A fleet given as a list: every address is a member; this object only coordinates them.
    if (hosts.length > 1) this.#joinFleet(hosts);
    else this.#connect();
  }

  /** Public clients delivered so far, and how many of them came on a prewarmed connection. */
  get clientCounts(): { clients: number; prewarmed: number } {
    return { ...this.#counts };
  }

  /** The public address from the latest registration, if registered now. */
  get publicAddress(): PublicAddress | undefined {
    return this.#registration === undefined ? this.#fleet?.publicAddress : this.#publicAddress;
  }

  /** Resolves with the public address at the next registration; rejects if refused for good. */
  established(): Promise<PublicAddress> {
    if (this.publicAddress !== undefined) return Promise.resolve(this.publicAddress);
    if (this.#closed) return Promise.reject(this.#refusal ?? new RelayError('closed', 'the tunnel was closed'));
    return new Promise((resolve, reject) => {
      const settle = (): void => {
        this.off('established', onEstablished);
        this.off('error', onError);
        this.off('close', onClose);
      };
      const onEstablished = (address: PublicAddress): void => {
        settle();
        resolve(address);
      };
      const onError = (err: Error): void => {
        settle();
        reject(err);
      };
      const onClose = (): void => onError(new RelayError('closed', 'the tunnel was closed before it was established'));
      this.once('established', onEstablished);
      this.once('error', onError);
      this.once('close', onClose);
    });
  }

  /**
   * Leaves the relay. Clients already connected keep their sockets. With a resume file
   * the relay keeps the port, and holds new clients, for a restart; see CloseOptions.
   */
  close(options: CloseOptions = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#timers.cancelAll();
    this.#dropWarmPool();
    this.#fleet?.close(options.leave);
    const leave = options.leave ?? this.#options.resumeFile === undefined;
    const control = this.#control;
    if (control !== undefined && leave && this.#registration !== undefined && this.#relayFeatures.has('leave')) {
      control.end(formatMessage({ kind: 'LEAVE' }));
      setTimeout(() => control.destroy(), LEAVE_LINGER_MS).unref();
    } else {
      control?.destroy();
    }
    this.emit('close');
  }

  #dropWarmPool(): void {
    this.#warmPool?.close();
    this.#warmPool = undefined;
  }

  #connect(): void {
    if (this.#closed) return;
    const { host, port } = this.#options;
    const socket = dialRelay({ host, port, tls: this.#tls() }, false);
    this.#control = socket;
    let lostReason = 'connection closed';
    socket.on('error', (err) => (lostReason = (err as NodeJS.ErrnoException).code ?? err.message));
    socket.once('close', () => this.#lost(socket, lostReason));
    const handshakeTimer = setTimeout(() => {
      lostReason = 'registration timed out';
      socket.destroy();
    }, this.#options.handshakeTimeoutMs ?? CLIENT_DEFAULTS.handshakeTimeoutMs);
    socket.once('close', () => clearTimeout(handshakeTimer));
    sendMessage(socket, {
      kind: 'HELLO',
      version: PROTOCOL_VERSION,
      host,
      ...(this.#publicAddress === undefined && this.#options.publicPort === undefined ? {} : { port: this.#publicAddress?.port ?? this.#options.publicPort }),
      ...(this.#resume === undefined ? {} : { resume: this.#resume }),
      ...(helloWarm(this.#options.prewarm) > 0 ? { warm: helloWarm(this.#options.prewarm) } : {}),
      features: FEATURES,
      ...(this.#options.tenant === undefined ? {} : { tenant: this.#options.tenant }),
    } as const);
    readLines(
      socket,
      Buffer.alloc(0),
      parseRelayLine,
      (msg) => {
        this.#lastHeard = performance.now();
        const refusal = this.#onMessage(socket, msg);
        if (refusal !== undefined) lostReason = refusal;
        if (this.#registration !== undefined) clearTimeout(handshakeTimer);
      },
      (failure) => {
        lostReason = `relay sent a bad line: ${failure.reason}`;
        socket.destroy();
      },
    );
  }

  /** Handles one line from the relay; returns a reason when the connection must end. */
  #onMessage(socket: Socket, msg: RelayMessage): string | undefined {
    switch (msg.kind) {
      case 'AUTH':
        if (this.#options.secret === undefined) {
          this.#fail(new RegistrationRefusedError('auth', 'authentication failed: the relay requires a secret (--secret or RELAY_SECRET)'));
          socket.destroy();
          return 'no secret';
        }
        sendMessage(socket, { kind: 'PROOF', mac: computeProof(this.#options.secret, msg.nonce) });
        return undefined;
      case 'OK':
        return this.#registered(msg);
      case 'CONNECT':
        this.#dialBack(msg.token).catch((err: unknown) => this.#log.error({ err }, 'delivering a relayed client failed'));
        return undefined;
      case 'PING':
        sendMessage(socket, { kind: 'PONG' });
        return undefined;
      case 'PROBE':
        this.#probes.answer(this.#dataEndpoint(), msg.token);
        return undefined;
      case 'SHUTDOWN':
        socket.destroy();
        return 'relay shut down';
      case 'REJOIN':
        this.#rejoinNow = true;
        socket.destroy();
        return 'relay asked to register again';
      case 'ERR':
        if (msg.code === 'superseded') {
          this.#fail(new RegistrationRefusedError('superseded', 'superseded: another process registered with the same resume key'));
        } else if (msg.code === 'auth' || msg.code === 'version') {
          // The relay's own text for auth already says "authentication failed".
          const text = msg.code === 'auth' ? (/authentication failed/.test(msg.text) ? msg.text : `authentication failed: ${msg.text}`) : `protocol version mismatch: ${msg.text}`;
          this.#fail(new RegistrationRefusedError(msg.code, text));
        }
        socket.destroy();
        return `relay refused: ${msg.code} ${msg.text}`;
      default:
        socket.destroy();
        return `unexpected ${msg.kind} from relay`;
    }
  }

  #registered(msg: RelayMessage & { kind: 'OK' }): undefined {
    this.#registration = { dataPort: msg.dataPort, heartbeatMs: msg.heartbeatMs, dataEndpoint: this.#dataEndpointFor(msg.dataPort) };
    this.#relayFeatures = new Set(msg.features ?? []);
    this.#resume = msg.resume;
    this.#attempt = 0;
    this.#publicAddress = { host: msg.host, port: msg.port, address: joinHostPort(msg.host, msg.port) };
    this.#log.info({ publicAddress: this.#publicAddress.address }, 'registered with relay');
    this.#watchHeartbeat(this.#control!, msg.heartbeatMs);
    this.#startWarmPool(msg.dataPort, msg.warmToken);
    if (msg.nodes !== undefined) this.#joinFleet(msg.nodes);
    this.#announce(this.#publicAddress);
    return undefined;
  }

  #announce(address: PublicAddress): void {
    // One service on several fleet nodes: the address is news when it changes, not once per node.
    if (this.#fleet !== undefined && address.address === this.#announced) return;
    this.#announced = address.address;
    this.emit('established', address);
  }

  /** Registers with each fleet node too (a member only reports them to its fleet). */
  #joinFleet(nodes: string[]): void {
    if (this.#options.fleetMember === true) {
      this.emit('nodes', nodes);
      return;
    }
    if (this.#fleet === undefined) {
      this.#resume ??= newToken();
      const own = this.#control;
      this.#fleet = new FleetMembers({ ...this.#options, resumeKey: this.#resume }, (options) => new RelayRegistration(this.#target, options), this.#log, {
        established: (address) => this.#announce(address),
        // Only the coordinator of a host list has no connection of its own to keep going.
        failed: (err) => own === undefined && this.#fail(err),
      });
      if (own?.remoteAddress !== undefined && own.remotePort !== undefined) this.#fleet.markOwn(own.remoteAddress, own.remotePort);
    }
    void this.#fleet.add(nodes);
  }

  #watchHeartbeat(socket: Socket, intervalMs: number): void {
    const limitMs = HEARTBEAT_MISSES * intervalMs;
    const check = (): void => {
      if (socket.destroyed || this.#control !== socket) return;
      if (performance.now() - this.#lastHeard > limitMs) {
        this.#log.warn({ silentMs: limitMs }, 'relay silent; reconnecting');
        socket.destroy();
        return;
      }
      this.#timers.later(intervalMs, check);
    };
    this.#timers.later(intervalMs, check);
  }

  #lost(socket: Socket, reason: string): void {
    if (this.#control !== socket) return;
    const wasRegistered = this.#registration !== undefined;
    this.#registration = undefined;
    // Parked on a relay that may be gone or unreachable; the next registration brings its own.
    this.#dropWarmPool();
    this.#control = undefined;
    if (wasRegistered) this.emit('disconnected', reason);
    if (this.#closed) return;
    if (this.#rejoinNow) {
      // An upgrade: the relay holds our clients for the moment it takes to come back.
      this.#rejoinNow = false;
      this.#attempt = 0;
      this.#log.info({ reason }, 'registering again');
      this.#connect();
      return;
    }
    const delay = backoffDelay(this.#attempt++, {
      initialMs: this.#options.backoff?.initialMs ?? CLIENT_DEFAULTS.backoffInitialMs,
      maxMs: this.#options.backoff?.maxMs ?? CLIENT_DEFAULTS.backoffMaxMs,
      jitter: this.#options.backoff?.jitter ?? CLIENT_DEFAULTS.backoffJitter,
    });
    this.#log.warn({ reason, retryInMs: delay }, 'lost the relay; reconnecting');
    this.#timers.later(delay, () => this.#connect());
  }

  #fail(err: Error): void {
    this.#closed = true;
    this.#refusal = err;
    this.#log.error({ err: err.message }, 'relay refused this service');
    this.#timers.cancelAll();
    this.#dropWarmPool();
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.emit('close');
  }

  #tls(): RelayEndpoint['tls'] {
    const tls = this.#options.tls;
    return tls === true ? { sessions: this.#tlsSessions } : tls === false || tls === undefined ? undefined : { ...tls, sessions: this.#tlsSessions };
  }

  #dataEndpoint(): RelayEndpoint | undefined {
    return this.#registration?.dataEndpoint;
  }

  /**
   * The data port at the address the control connection reached. A relay named by a
   * host name is then not looked up again for every client (getaddrinfo on libuv's
   * thread pool, per dial-back), and a name with several addresses cannot send a
   * dial-back to another machine than the one that sent the CONNECT. TLS still checks
   * the certificate against the name.
   */
  #dataEndpointFor(dataPort: number): RelayEndpoint {
    const host = this.#options.host;
    const reached = this.#control?.remoteAddress;
    const address = isIP(host) === 0 && reached !== undefined ? { address: reached } : {};
    return { host, ...address, port: dataPort, tls: this.#tls() };
  }

  async #dialBack(token: string): Promise<void> {
    const endpoint = this.#dataEndpoint();
    if (endpoint === undefined) return;
    const timeoutMs = this.#options.handshakeTimeoutMs ?? CLIENT_DEFAULTS.handshakeTimeoutMs;
    const began = performance.now();
    const dialing = openDataConnection(endpoint, { kind: 'DATA', token }, timeoutMs, (reason) =>
      this.#log.warn({ reason }, 'dial-back refused'),
    );
    // After this client's own connect(), so the pool's growth does not delay it.
    this.#warmPool?.missed();
    const client = await dialing;
    if (client === undefined) return;
    this.#warmPool?.dialed(performance.now() - began);
    this.#deliver(client);
  }

  #startWarmPool(dataPort: number, key: string | undefined): void {
    this.#dropWarmPool();
    const size = poolSize(this.#options.prewarm);
    if (key === undefined || size === 0) return;
    this.#warmPool = new WarmPool({
      endpoint: this.#registration?.dataEndpoint ?? this.#dataEndpointFor(dataPort),
      key,
      size,
      deliver: (socket) => {
        this.#counts.prewarmed++;
        this.#deliver(socket);
      },
      log: this.#log,
    });
    this.#warmPool.fill();
  }

  #deliver(socket: Socket): void {
    this.#counts.clients++;
    const target = this.#target;
    if (typeof target === 'function') {
      target(socket);
      return;
    }
    // Behave as if the server had accepted the socket itself, half-close setting included.
    socket.allowHalfOpen = (target as Server & { allowHalfOpen?: boolean }).allowHalfOpen ?? true;
    target.emit('connection', socket);
  }
}

/**
 * Serves `target` through a relay instead of a local port: the one line that replaces
 * `server.listen(port)`. Every public client of the relay arrives at the target as an
 * ordinary socket whose remoteAddress is the client's own.
 */
export function listenViaRelay(target: ConnectionTarget, options: RelayClientOptions): RelayRegistration {
  return new RelayRegistration(target, options);
}

/** @deprecated The old name of {@link RelayRegistration} (a tunnel is one spliced client). */
export const RelayTunnel = RelayRegistration;
/** @deprecated The old name of {@link RelayRegistration}. */
export type RelayTunnel = RelayRegistration;
