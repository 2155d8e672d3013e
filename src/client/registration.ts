import { EventEmitter } from 'node:events';
import { RelayError, type RegistrationRefusedError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { joinHostPort } from '../protocol/addresses.js';
import { newToken } from '../protocol/auth.js';
import { attemptFailure, type AttemptFailure } from './attempt-failure.js';
import { backoffDelay } from './backoff.js';
import { ControlConnection } from './control.js';
import { DataPath, dataEndpointFor } from './data-path.js';
import { FleetMembers } from './fleet-members.js';
import { helloFor, publicAddressOf, type Registered } from './handshake.js';
import { backoffPolicyOf, handshakeTimeoutOf, poolKeyOf, validateClientOptions, type CloseOptions, type ConnectionTarget, type PublicAddress, type RelayClientOptions } from './options.js';
import { PoolStanding } from './pool-standing.js';
import { loadResumeKey } from './resume-file.js';
import { Timers } from './timers.js';
import { endpointTls, TlsSessions, type RelayEndpoint } from './transport.js';

/**
 * A program's presence on a relay. Keeps the control connection up (reconnecting with
 * backoff after any loss), answers every dial-back request, and hands each public
 * client to the target as an ordinary socket.
 *
 * Events: `established` (PublicAddress) when the service becomes reachable: at a
 * registration while no other registration of it is up (with one relay: every
 * registration), or when the address changes; `disconnected` (reason) when the control
 * connection is lost; `error` (RegistrationRefusedError) when the relay refuses the
 * registration for good (wrong secret, other protocol version), or, before any
 * registration worked, the settings cannot work (not a relay, TLS), after which it stops;
 * `close` after close().
 */
export class RelayRegistration extends EventEmitter {
  readonly #target: ConnectionTarget;
  readonly #options: RelayClientOptions;
  readonly #log: Logger;
  readonly #data: DataPath;
  readonly #timers = new Timers();
  /** Resumed on every dial-back and reconnect with TLS (see TlsSessions). */
  readonly #tlsSessions = new TlsSessions();
  #control: ControlConnection | undefined;
  /** Registered now, over #control. */
  #registered = false;
  /** From the latest registration, kept while reconnecting to ask for the same port. */
  #publicAddress: PublicAddress | undefined;
  #resume: string | undefined;
  /** The pool key, for a pool member; what it has told its relays. */
  readonly #pool: string | undefined;
  readonly #standing = new PoolStanding();
  #attempt = 0;
  #closed = false;
  /** A registration has worked once: from then on every failure is a loss to retry. */
  #everRegistered = false;
  /** Told once that the relay asked for no secret though one was given. */
  #warnedNoSecret = false;
  /** In a fleet, this object's own connection was superseded: its members carry on. */
  #ownStopped = false;
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
    this.#data = new DataPath({ target, prewarm: options.prewarm, handshakeTimeoutMs: handshakeTimeoutOf(options), log: this.#log });
    if (options.resumeFile !== undefined) this.#resume = loadResumeKey(options.resumeFile);
    if (options.resumeKey !== undefined) this.#resume = options.resumeKey;
    this.#pool = poolKeyOf(options);
    const hosts = options.host.split(',');
    // A fleet given as a list: every address is a member; this object only coordinates them.
    if (hosts.length > 1) this.#joinFleet(hosts, false);
    else this.#connect();
  }

  /** Public clients delivered so far, and how many of them came on a prewarmed connection. */
  get clientCounts(): { clients: number; prewarmed: number } {
    return this.#data.counts;
  }

  /** The public address from the latest registration, if registered now. */
  get publicAddress(): PublicAddress | undefined {
    return this.#registered ? this.#publicAddress : this.#fleet?.publicAddress;
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
   * A pool member stops taking new clients (`DRAIN` to every relay; clients already
   * connected go on). Resolves once every relay has read it and every client it gave
   * before has been delivered; close() once they are done. Without a pool key it does nothing.
   */
  async drain(): Promise<void> {
    if (this.#pool === undefined) return;
    this.#standing.drain(this.#control);
    // Clients the relay gave us before it read DRAIN are served: wait until they are delivered, so close() cannot strand one.
    await Promise.all([this.#control?.barrier(), this.#fleet?.drain()]);
    await this.#data.settled();
  }

  /** A pool member's target is down (no new clients for it) or back (`HEALTH`); a member starts as up. */
  setHealth(state: 'up' | 'down'): void {
    if (this.#pool === undefined) return;
    this.#standing.setHealth(state, this.#control);
    this.#fleet?.setHealth(state);
  }

  /**
   * Leaves the relay. Clients already connected keep their sockets. With a resume file
   * or a pool key the relay keeps the port, and holds new clients, for a restart; see CloseOptions.
   */
  close(options: CloseOptions = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#timers.cancelAll();
    this.#data.stopPrewarm();
    this.#fleet?.close(options.leave);
    this.#control?.close(options.leave ?? (this.#options.resumeFile === undefined && this.#pool === undefined));
    this.emit('close');
  }

  #connect(): void {
    if (this.#closed) return;
    const { host, port, secret } = this.#options;
    const control: ControlConnection = new ControlConnection(
      {
        relay: { host, port, tls: this.#tls() },
        hello: helloFor(this.#options, this.#publicAddress?.port, this.#resume, this.#pool),
        secret,
        handshakeTimeoutMs: handshakeTimeoutOf(this.#options),
        log: this.#log,
      },
      {
        registered: (msg, authenticated) => this.#onRegistered(control, msg, authenticated),
        connect: (token, client) => this.#data.dialBack(token, client, this.#standing.gate(control, token, this.#options.admit)),
        probe: (token) => this.#data.probe(token),
        nodes: (nodes) => this.#joinFleet(nodes, true),
        refused: (err) => this.#refused(err as RegistrationRefusedError),
        lost: (reason, rejoin) => this.#lost(control, reason, rejoin),
      },
    );
    this.#control = control;
  }

  #onRegistered(control: ControlConnection, msg: Registered, authenticated: boolean): void {
    const address = publicAddressOf(msg);
    this.#registered = true;
    this.#everRegistered = true;
    if (!authenticated && this.#options.secret !== undefined) this.#noSecretAsked();
    this.#resume = msg.resume;
    this.#attempt = 0;
    this.#publicAddress = address;
    this.#log.info({ publicAddress: address.address }, 'registered with relay');
    this.#data.open(dataEndpointFor(this.#options.host, control.remoteAddress, msg.dataPort, this.#tls()), msg.warmToken);
    this.#standing.greet(control);
    if (msg.nodes !== undefined) this.#joinFleet(msg.nodes, true);
    this.#announce(address, this.#fleet?.registeredBesides(undefined) ?? false);
  }

  /**
   * One rule for a single relay and a fleet: the address is news when the service was
   * reachable nowhere before this registration (`othersUp` false), or when it changed.
   */
  #announce(address: PublicAddress, othersUp: boolean): void {
    const news = !othersUp || address.address !== this.#announced;
    this.#announced = address.address;
    if (news) this.emit('established', address);
  }

  /** A relay without a secret registers anyone: a service given one is probably not where it meant to be. */
  #noSecretAsked(): void {
    if (this.#options.fleetMember === true) {
      this.emit('unauthenticated');
    } else if (!this.#warnedNoSecret) {
      this.#warnedNoSecret = true;
      this.#log.warn({ relay: joinHostPort(this.#options.host, this.#options.port) }, 'the relay asked for no secret: the secret given is not used');
    }
  }

  /** Registers with each fleet node too (a member only reports them to its fleet); `listed`: from `nodes=`. */
  #joinFleet(nodes: string[], listed: boolean): void {
    if (this.#options.fleetMember === true) {
      this.emit('nodes', nodes);
      return;
    }
    if (this.#fleet === undefined) {
      const key = this.#pool !== undefined ? { poolKey: this.#pool } : { resumeKey: (this.#resume ??= newToken()) };
      const own = this.#control;
      this.#fleet = new FleetMembers({ ...this.#options, ...key }, (options) => new RelayRegistration(this.#target, options), this.#log, {
        established: (address, othersUp) => this.#announce(address, othersUp || this.#registered),
        unauthenticated: () => this.#noSecretAsked(),
        // Only a coordinator of a host list, or an owner superseded itself, has no connection of its own to keep going.
        failed: (err) => (own === undefined || this.#ownStopped) && this.#fail(err),
      });
      if (own?.remoteAddress !== undefined && own.remotePort !== undefined) this.#fleet.markOwn(own.remoteAddress, own.remotePort);
    }
    void this.#fleet.add(nodes, listed);
  }

  #lost(control: ControlConnection, reason: string, rejoin: boolean): void {
    if (this.#control !== control) return;
    const wasRegistered = this.#registered;
    this.#registered = false;
    this.#control = undefined;
    this.#data.lost();
    if (wasRegistered) this.emit('disconnected', reason);
    if (this.#closed || this.#ownStopped) return;
    if (rejoin) {
      // An upgrade: the relay holds our clients for the moment it takes to come back.
      this.#attempt = 0;
      this.#log.info({ reason }, 'registering again');
      this.#connect();
      return;
    }
    const failure = wasRegistered ? undefined : this.#failureOf(control);
    // Settings that worked once may work again (a renewed certificate, a relay back on its port).
    if (failure?.kind === 'wrong-settings' && !this.#everRegistered) return this.#fail(failure.error);
    this.#retry(failure?.kind === 'wrong-settings' ? failure.error.message : reason, failure);
  }

  #failureOf(control: ControlConnection): AttemptFailure {
    const tls = this.#options.tls !== undefined && this.#options.tls !== false;
    return attemptFailure(control.attempt, { host: this.#options.host, port: this.#options.port, tls });
  }

  #retry(reason: string, failure: AttemptFailure | undefined): void {
    const retryInMs = backoffDelay(this.#attempt++, backoffPolicyOf(this.#options));
    const why = failure?.kind === 'other' && failure.hint !== undefined ? `${reason}: ${failure.hint}` : reason;
    if (failure?.kind === 'unresolved') this.#log.warn({ retryInMs }, `cannot resolve ${this.#options.host}; retrying`);
    else if (!this.#everRegistered) this.#log.warn({ reason: why, retryInMs }, 'cannot register with the relay; retrying');
    else this.#log.warn({ reason: why, retryInMs }, 'lost the relay; reconnecting');
    this.#timers.later(retryInMs, () => this.#connect());
  }

  /** A refusal for good on this object's own connection; in a fleet, `superseded` ends only that node's (docs/integrating.md). */
  #refused(err: RegistrationRefusedError): void {
    if ((err.code === 'superseded' || err.code === 'pool') && this.#fleet?.hasMembers() === true) {
      this.#ownStopped = true;
      this.#log.warn({ node: joinHostPort(this.#options.host, this.#options.port), err: err.message }, 'fleet node refused this service for good');
      return;
    }
    this.#fail(err);
  }

  #fail(err: Error): void {
    this.#closed = true;
    this.#refusal = err;
    this.#timers.cancelAll();
    this.#data.stopPrewarm();
    this.#fleet?.close(false);
    // A listener tells its user itself (the programs: one line on stderr); else the log does.
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else this.#log.error({ err: err.message }, 'stopped for good');
    this.emit('close');
  }

  #tls(): RelayEndpoint['tls'] {
    return endpointTls(this.#options.tls, this.#tlsSessions);
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
