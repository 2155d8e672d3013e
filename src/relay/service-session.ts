import type { Server, Socket } from 'node:net';
import { HEARTBEAT_MISSES, type RelayOptions } from '../config.js';
import type { Logger } from '../log.js';
import { readLines, refuse, refusalReply, sendMessage } from '../net/lines.js';
import { ignoreSocketError } from '../net/ignore-error.js';
import { resetSocket } from '../net/splice.js';
import type { Message } from '../protocol/messages.js';
import type { DialbackRegistry, PendingClient } from './dialbacks.js';
import type { RelayStats } from './stats.js';

/** Bytes of unread control lines a service may leave queued before it is dropped. */
const CONTROL_BUFFER_LIMIT = 64 * 1024;

/** What a session needs from the relay that owns it. */
export interface SessionHost {
  readonly log: Logger;
  readonly stats: RelayStats;
  readonly dialbacks: DialbackRegistry<ServiceSession>;
  readonly options: Pick<RelayOptions, 'maxClientsPerService' | 'maxPendingPerService' | 'maxWarmPerService' | 'heartbeatMs'>;
  openTunnel(session: ServiceSession, client: Socket, data: Socket, head: Buffer): void;
  refused(reason: string, fields: Record<string, unknown>, message: string, log?: Logger): void;
  sessionClosed(session: ServiceSession): void;
}

export interface SessionIdentity {
  id: string;
  port: number;
  resume: string;
  warmToken: string | undefined;
}

/** An address as the service should see it: IPv4 without the v6-mapped prefix. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

export function clientAddressOf(socket: Socket): { address: string; port: number } | undefined {
  const address = socket.remoteAddress;
  const port = socket.remotePort;
  if (address === undefined || port === undefined) return undefined;
  return { address: plainAddress(address), port };
}

/** The CLIENT line for a public client: where it came from and which address it reached. */
function clientLine(client: Socket): Message | undefined {
  const from = clientAddressOf(client);
  const to = client.localAddress;
  const toPort = client.localPort;
  if (from === undefined || to === undefined || toPort === undefined) return undefined;
  return { kind: 'CLIENT', clientAddress: from.address, clientPort: from.port, serverAddress: plainAddress(to), serverPort: toPort };
}

/**
 * One registered service on the relay: its control connection, its public port, the
 * public clients waiting for it to dial back, and its prewarmed data connections.
 * Open tunnels are not the session's: they outlive it, so a service that reconnects
 * its control connection never cuts a client already talking to it.
 */
export class ServiceSession {
  readonly id: string;
  readonly port: number;
  readonly resume: string;
  readonly warmToken: string | undefined;
  readonly log: Logger;
  readonly #host: SessionHost;
  readonly #control: Socket;
  readonly #publicServer: Server;
  readonly #pending = new Set<string>();
  readonly #idle = new Set<Socket>();
  #clients = 0;
  #lastHeard = performance.now();
  #heartbeat: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(host: SessionHost, identity: SessionIdentity, control: Socket, publicServer: Server) {
    this.id = identity.id;
    this.port = identity.port;
    this.resume = identity.resume;
    this.warmToken = identity.warmToken;
    this.#host = host;
    this.#control = control;
    this.#publicServer = publicServer;
    this.log = host.log.child({ service: this.id, publicPort: this.port });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Public clients waiting for this service to dial back. */
  get waiting(): number {
    return this.#pending.size;
  }

  /** Sends OK and starts serving: control lines, heartbeat, public clients. */
  start(ok: Message, head: Buffer): void {
    sendMessage(this.#control, ok);
    // The control socket is half-open capable like every relay socket, so a FIN must
    // end the session explicitly; 'close' covers resets and local destroys.
    this.#control.once('end', () => this.close('service closed the control connection'));
    this.#control.once('close', () => this.close('control connection closed'));
    readLines(
      this.#control,
      head,
      (msg) => this.#onControlMessage(msg),
      (failure) => this.close(`bad control line: ${failure.reason}`, refusalReply(failure.code, failure.reason)),
    );
    const intervalMs = this.#host.options.heartbeatMs;
    this.#heartbeat = setInterval(() => {
      if (performance.now() - this.#lastHeard > HEARTBEAT_MISSES * intervalMs) {
        this.close(`no heartbeat for ${HEARTBEAT_MISSES * intervalMs} ms`);
      } else {
        this.#sendControl({ kind: 'PING' });
      }
    }, intervalMs);
    this.#heartbeat.unref();
    this.#publicServer.on('connection', (client: Socket) => this.#onClient(client));
  }

  /**
   * Writes to the control connection unless the service has stopped reading it: then
   * the relay would buffer PONGs and CONNECTs without bound, so the session ends.
   */
  #sendControl(msg: Message): void {
    if (this.#control.writableLength > CONTROL_BUFFER_LIMIT) {
      this.close('service is not reading its control connection', refusalReply('limit', 'control connection not read'));
      return;
    }
    sendMessage(this.#control, msg);
  }

  #onControlMessage(msg: Message): void {
    this.#lastHeard = performance.now();
    if (msg.kind === 'PONG') return;
    if (msg.kind === 'PING') {
      this.#sendControl({ kind: 'PONG' });
      return;
    }
    this.close(`unexpected ${msg.kind} on control connection`, refusalReply('bad-line', `${msg.kind} is not valid here`));
  }

  #onClient(client: Socket): void {
    client.on('error', ignoreSocketError);
    const from = clientAddressOf(client);
    const { stats, options: limits } = this.#host;
    if (this.#closed || from === undefined) {
      resetSocket(client);
      return;
    }
    if (this.#clients >= limits.maxClientsPerService) {
      return this.#refuseClient(client, 'clients', `over ${limits.maxClientsPerService} clients`);
    }
    const line = clientLine(client);
    const idle = line === undefined ? undefined : this.#takeIdle();
    if (idle !== undefined && line !== undefined) {
      this.#countClient(client);
      sendMessage(idle, line);
      stats.observeDialback(0);
      this.#host.openTunnel(this, client, idle, Buffer.alloc(0));
      return;
    }
    if (this.#pending.size >= limits.maxPendingPerService) {
      return this.#refuseClient(client, 'pending', `over ${limits.maxPendingPerService} pending dial-backs`);
    }
    this.#countClient(client);
    const entry = this.#host.dialbacks.add(this, client);
    this.#pending.add(entry.token);
    this.#sendControl({ kind: 'CONNECT', token: entry.token, clientAddress: from.address, clientPort: from.port });
  }

  #countClient(client: Socket): void {
    this.#clients++;
    client.once('close', () => this.#clients--);
  }

  #refuseClient(client: Socket, reason: string, detail: string): void {
    this.#host.refused(reason, { client: clientAddressOf(client)?.address }, `public client refused: ${detail}`, this.log);
    client.destroy();
  }

  /** The service dialed back for a client of ours: splice them. */
  dialedBack(entry: PendingClient<ServiceSession>, data: Socket, head: Buffer): void {
    this.#pending.delete(entry.token);
    const line = clientLine(entry.client);
    // Defensive: a waiting client is not read, so its leaving is normally only noticed
    // once spliced (the service then sees the reset); this catches a client already gone.
    if (line === undefined || entry.client.destroyed) {
      refuse(data, refusalReply('bad-token', 'the client left before the dial-back'));
      return;
    }
    this.#host.stats.observeDialback((performance.now() - entry.since) / 1000);
    sendMessage(data, line);
    this.#host.openTunnel(this, entry.client, data, head);
  }

  dialbackExpired(entry: PendingClient<ServiceSession>): void {
    this.#pending.delete(entry.token);
    this.#host.refused('dialback-timeout', { client: clientAddressOf(entry.client)?.address }, 'service did not dial back in time; client closed', this.log);
    entry.client.destroy();
  }

  /** Parks a prewarmed data connection; false when the pool is full or we are closing. */
  addIdle(socket: Socket): boolean {
    if (this.#closed || this.#idle.size >= this.#host.options.maxWarmPerService) return false;
    this.#idle.add(socket);
    this.#host.stats.warmIdle++;
    // A parked connection must stay silent; reading it is how its close is noticed.
    const onData = (): void => {
      this.#forgetIdle(socket);
      refuse(socket, refusalReply('bad-line', 'an idle data connection must wait for CLIENT'));
    };
    socket.on('data', onData);
    socket.once('end', () => socket.destroy());
    socket.once('close', () => this.#forgetIdle(socket));
    socket.resume();
    return true;
  }

  #forgetIdle(socket: Socket): void {
    if (this.#idle.delete(socket)) this.#host.stats.warmIdle--;
  }

  #takeIdle(): Socket | undefined {
    for (const socket of this.#idle) {
      this.#forgetIdle(socket);
      if (socket.destroyed || !socket.writable) continue;
      socket.pause();
      socket.removeAllListeners('data');
      socket.removeAllListeners('end');
      return socket;
    }
    return undefined;
  }

  /** Ends the registration; open tunnels go on. `farewell` is a last line for the service. */
  close(reason: string, farewell?: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.#publicServer.close();
    for (const token of this.#pending) this.#host.dialbacks.take(token)?.client.destroy();
    this.#pending.clear();
    for (const socket of this.#idle) {
      this.#forgetIdle(socket);
      socket.destroy();
    }
    if (farewell !== undefined) refuse(this.#control, farewell);
    else this.#control.destroy();
    this.log.info({ reason }, 'service left');
    this.#host.sessionClosed(this);
  }
}
