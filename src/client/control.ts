import type { Socket } from 'node:net';
import { systemClock, type Clock, type Timer } from '../clock.js';
import type { Logger } from '../log.js';
import { readLines, sendMessage } from '../net/lines.js';
import { computeProof } from '../protocol/auth.js';
import { formatMessage } from '../protocol/format.js';
import type { Feature, RelayMessage, ServiceMessage } from '../protocol/messages.js';
import { parseRelayLine } from '../protocol/parse.js';
import type { AttemptRecord } from './attempt-failure.js';
import { joinHostPort } from '../protocol/addresses.js';
import { missingSecretError, namesMissingError, poolUnknownError, refusalError, unhonouredLists, type Hello, type Refusal, type Registered } from './handshake.js';
import { HeartbeatWatch } from './heartbeat.js';
import { dialRelay, type RelayEndpoint } from './transport.js';

/** The relay's refusal of a name another key holds (docs/protocol.md §18). */
const NAME_TAKEN = /^name \S+ is taken by another service/;

/** How long a LEAVE may take to reach the relay before the connection is dropped anyway. */
const LEAVE_LINGER_MS = 2_000;

/** What a pool member tells the relay (feature `pool`). */
export type PoolMessage = ServiceMessage & { kind: 'DRAIN' | 'HEALTH' | 'DECLINE' };

/** What a control connection reports to the registration that opened it. */
export interface ControlEvents {
  /** The relay took the HELLO (its OK); `authenticated`: it asked for the secret first. */
  registered(msg: Registered, authenticated: boolean): void;
  /** A public client (from `client`) waits for a dial-back with this token. */
  connect(token: string, client: { address: string; port: number }): void;
  /** The relay asks for a dial-back with this token that proves the data path works. */
  probe(token: string): void;
  /** A fleet node says which nodes the fleet has now (NODES). */
  nodes(nodes: string[]): void;
  /** The relay refused this service for good; the connection is closing. */
  refused(err: Error): void;
  /** The connection closed; `rejoin`: the relay asked for a new registration at once (an upgrade). */
  lost(reason: string, rejoin: boolean): void;
}

export interface ControlSettings {
  relay: RelayEndpoint;
  hello: Hello;
  secret: string | undefined;
  handshakeTimeoutMs: number;
  log: Logger;
  /** Times the handshake and the heartbeat. */
  clock?: Clock;
}

/**
 * One control connection, from HELLO to close: answers AUTH and PING itself, watches
 * the heartbeat once registered, and passes the rest to its registration. Reports
 * `lost` once, when the socket has closed, with the latest reason it knew of.
 */
export class ControlConnection {
  readonly #socket: Socket;
  readonly #settings: ControlSettings;
  readonly #events: ControlEvents;
  readonly #clock: Clock;
  readonly #handshakeTimer: Timer;
  #reason = 'connection closed';
  #rejoin = false;
  #registered = false;
  /** Optional messages the relay said it understands, in its OK. */
  #features = new Set<Feature>();
  #heartbeat: HeartbeatWatch | undefined;
  /** What the peer did, for telling wrong settings from a loss (see attempt-failure.ts). */
  readonly #attempt: AttemptRecord = { error: undefined, firstBytes: undefined, badFirstLine: false, endedHere: false };
  #heardRelay = false;
  #authenticated = false;
  /** Waiting for the relay's PONG to a PING of ours (see barrier). */
  #pongWaiters: (() => void)[] = [];

  constructor(settings: ControlSettings, events: ControlEvents) {
    this.#settings = settings;
    this.#events = events;
    this.#clock = settings.clock ?? systemClock;
    const socket = dialRelay(settings.relay, false);
    this.#socket = socket;
    socket.on('error', (err) => {
      this.#attempt.error ??= err;
      this.#reason = (err as NodeJS.ErrnoException).code ?? err.message;
    });
    socket.once('data', (chunk: Buffer) => (this.#attempt.firstBytes = chunk));
    socket.once('close', () => this.#closed());
    this.#handshakeTimer = this.#clock.setTimeout(() => this.#end('registration timed out'), settings.handshakeTimeoutMs);
    sendMessage(socket, settings.hello);
    readLines(
      socket,
      Buffer.alloc(0),
      parseRelayLine,
      (msg) => this.#onLine(msg),
      (failure) => {
        this.#attempt.badFirstLine = !this.#heardRelay;
        this.#end(`relay sent a bad line: ${failure.reason}`);
      },
    );
  }

  /** What this connection saw of its peer; read once it is lost. */
  get attempt(): Readonly<AttemptRecord> {
    return this.#attempt;
  }

  /** The address this connection reached, once connected. */
  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.#socket.remotePort;
  }

  /** Registered with a relay that listed `pool`: the pool's messages may be sent. */
  get pooled(): boolean {
    return this.#registered && this.#features.has('pool') && !this.#socket.destroyed;
  }

  /** Sends a pool member's message, if the relay can read it (see `pooled`); else drops it. */
  sendPool(msg: PoolMessage): void {
    if (this.pooled) sendMessage(this.#socket, msg);
  }

  /**
   * Resolves once the relay has answered a PING sent now: it has read every line sent
   * before (a DRAIN, say), and every line it wrote before reading them (a CONNECT) has
   * arrived. Resolves at once when not registered, and when the connection ends.
   */
  barrier(): Promise<void> {
    if (!this.#registered || this.#socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#pongWaiters.push(resolve);
      sendMessage(this.#socket, { kind: 'PING' });
    });
  }

  /** Ends the connection; with `leave`, a registered relay that understands LEAVE is told first. */
  close(leave: boolean): void {
    this.#heartbeat?.stop();
    const socket = this.#socket;
    if (leave && this.#registered && this.#features.has('leave')) {
      socket.end(formatMessage({ kind: 'LEAVE' }));
      setTimeout(() => socket.destroy(), LEAVE_LINGER_MS).unref();
    } else {
      socket.destroy();
    }
  }

  #onLine(msg: RelayMessage): void {
    // Lines that came in the same read as the one that ended it (CONNECTs after an OK refused, say) are not acted on.
    if (this.#socket.destroyed) return;
    this.#heardRelay = true;
    this.#heartbeat?.heard();
    switch (msg.kind) {
      case 'AUTH':
        return this.#authenticate(msg.nonce);
      case 'OK':
        return this.#onRegistered(msg);
      case 'CONNECT':
        return this.#events.connect(msg.token, { address: msg.clientAddress, port: msg.clientPort });
      case 'PING':
        sendMessage(this.#socket, { kind: 'PONG' });
        return;
      case 'PONG':
        return this.#pongWaiters.shift()?.();
      case 'PROBE':
        return this.#events.probe(msg.token);
      case 'NODES':
        return this.#events.nodes(msg.nodes);
      case 'SHUTDOWN':
        return this.#end('relay shut down');
      case 'REJOIN':
        this.#rejoin = true;
        return this.#end('relay asked to register again');
      case 'ERR':
        return this.#onRefusal(msg);
      default:
        return this.#end(`unexpected ${msg.kind} from relay`);
    }
  }

  #authenticate(nonce: string): void {
    const secret = this.#settings.secret;
    if (secret === undefined) {
      this.#events.refused(missingSecretError());
      return this.#end('no secret');
    }
    this.#authenticated = true;
    sendMessage(this.#socket, { kind: 'PROOF', mac: computeProof(secret, nonce) });
  }

  #onRegistered(msg: Registered): void {
    this.#clock.clearTimeout(this.#handshakeTimer);
    this.#features = new Set(msg.features ?? []);
    const { name, pool } = this.#settings.hello;
    const relayAddress = joinHostPort(this.#settings.relay.host, this.#settings.relay.port);
    if (name !== undefined && !this.#features.has('name')) {
      this.#events.refused(namesMissingError(name, relayAddress));
      return this.#end('relay cannot give names');
    }
    if (pool !== undefined && !this.#features.has('pool')) {
      this.#events.refused(poolUnknownError(relayAddress));
      return this.#end('the relay does not know pools');
    }
    this.#registered = true;
    const unhonoured = unhonouredLists(this.#settings.hello, msg);
    if (unhonoured !== undefined) {
      this.#events.refused(unhonoured);
      this.#attempt.endedHere = true;
      this.#reason = 'the relay ignored allow=/deny=';
      // LEAVE where it is understood: the port it gave is of no use to anyone.
      return this.close(true);
    }
    this.#heartbeat?.stop();
    this.#heartbeat = new HeartbeatWatch(this.#clock, msg.heartbeatMs, (silentMs) => this.#silent(silentMs));
    this.#events.registered(msg, this.#authenticated);
  }

  #onRefusal(msg: Refusal): void {
    const err = refusalError(msg);
    if (err !== undefined) this.#events.refused(err);
    // Not a setting: the name's holder may leave, or its reservation end.
    const taken = msg.code === 'limit' && NAME_TAKEN.test(msg.text) ? ' (it frees up once its holder leaves and the grace ends)' : '';
    this.#end(`relay refused: ${msg.code} ${msg.text}${taken}`);
  }

  #silent(silentMs: number): void {
    if (this.#socket.destroyed) return;
    this.#settings.log.warn({ silentMs }, 'relay silent; reconnecting');
    this.#socket.destroy();
  }

  #end(reason: string): void {
    this.#attempt.endedHere = true;
    this.#reason = reason;
    this.#socket.destroy();
  }

  #closed(): void {
    this.#clock.clearTimeout(this.#handshakeTimer);
    this.#heartbeat?.stop();
    for (const wake of this.#pongWaiters.splice(0)) wake();
    this.#events.lost(this.#reason, this.#rejoin);
  }
}
