import type { Socket } from 'node:net';
import type { Clock, Timer } from '../clock.js';
import { HEARTBEAT_MISSES, type RelayOptions } from '../config/defaults.js';
import type { Logger } from '../log.js';
import { readLines, refuse, refusalReply, sendMessage, sendMessageBeforeData } from '../net/lines.js';
import { resetSocket } from '../net/splice.js';
import type { Feature, Message, ServiceMessage } from '../protocol/messages.js';
import { parseServiceLine } from '../protocol/parse.js';
import { clientAddressOf, clientLine } from './client-address.js';
import { ControlWriter } from './control-writer.js';
import { descriptorFree } from '../net/out-of-fds.js';
import type { DialbackRegistry, PendingClient } from './dialbacks.js';
import { NOT_PROBED, startProber, type ProbeStatus, type ProbeTokens, type ServiceProber } from './probes.js';
import type { DoorOwner, PublicDoor } from './public-door.js';
import type { RelayStats } from '../monitor/stats.js';
import type { TenantAccount } from '../access/tenancy.js';

/** What a session needs from the relay that owns it. */
export interface SessionHost {
  readonly log: Logger;
  readonly stats: RelayStats;
  readonly clock: Clock;
  readonly dialbacks: DialbackRegistry<ServiceSession>;
  readonly probes: ProbeTokens;
  readonly options: Pick<RelayOptions, 'maxClientsPerService' | 'maxTunnels' | 'maxPendingPerService' | 'maxWarmPerService' | 'heartbeatMs' | 'probeIntervalMs'>;
  openTunnel(session: ServiceSession, client: Socket, data: Socket, head: Buffer): void;
  refused(reason: string, fields: Record<string, unknown>, message: string, log?: Logger): void;
  sessionClosed(session: ServiceSession): void;
}

export interface SessionIdentity {
  id: string;
  port: number;
  /** The lease key: a hash of the resume key, never the key itself. */
  key: string;
  warmToken: string | undefined;
  /** Optional messages this service said it understands. */
  features: ReadonlySet<Feature>;
  /** With --tenants: the tenant it registered as. */
  tenant?: TenantAccount | undefined;
}

const kCountedBy = Symbol('counted by');
/** A public client, with the session that counts it while it is taken (none while it waits at a door). */
type CountedClient = Socket & { [kCountedBy]?: ServiceSession | undefined };

/**
 * One listener shared by every counted client, which finds its session on the socket:
 * a closure per client would be kept for as long as its tunnel is open.
 */
function uncountClient(this: CountedClient): void {
  releaseCount(this);
}

/** The client is no longer taken: by a session that counted it, because it closed or went back to a door. */
function releaseCount(client: CountedClient): void {
  const session = client[kCountedBy];
  if (session === undefined) return;
  client[kCountedBy] = undefined;
  session.clientGone();
}

/** How a registration ended, which decides what happens to its port. */
export type Departure = 'gone' | 'left';

/**
 * One registered service on the relay: its control connection, the public clients
 * waiting for it to dial back, and its prewarmed data connections. The public port is
 * not the session's but its door's, which outlives it: clients arriving while the
 * service is away wait there for the next registration with the same key. Open
 * tunnels are not the session's either, so a control reconnect never cuts a client
 * already talking to the service.
 */
export class ServiceSession implements DoorOwner {
  readonly id: string;
  readonly port: number;
  readonly key: string;
  readonly warmToken: string | undefined;
  readonly features: ReadonlySet<Feature>;
  /** With --tenants: its tenant, whose limits (maxClientsPerIp too) apply to its clients. */
  readonly tenant: TenantAccount | undefined;
  readonly log: Logger;
  readonly #host: SessionHost;
  readonly #control: Socket;
  readonly #writer: ControlWriter;
  readonly #door: PublicDoor;
  readonly #pending = new Set<string>();
  readonly #idle = new Set<Socket>();
  #clients = 0;
  #lastHeard: number;
  #heartbeat: Timer | undefined;
  #departure: Departure | undefined;
  #prober: ServiceProber | undefined;

  constructor(host: SessionHost, identity: SessionIdentity, control: Socket, door: PublicDoor) {
    this.id = identity.id;
    this.port = identity.port;
    this.key = identity.key;
    this.warmToken = identity.warmToken;
    this.features = identity.features;
    this.tenant = identity.tenant;
    this.#host = host;
    this.#control = control;
    this.#writer = new ControlWriter(control, host.clock);
    this.#door = door;
    this.#lastHeard = host.clock.now();
    this.log = host.log.child({ service: this.id, publicPort: this.port, ...(this.tenant === undefined ? {} : { tenant: this.tenant.name }) });
  }

  get closed(): boolean {
    return this.#departure !== undefined;
  }

  /** How the registration ended; undefined while it lasts. */
  get departure(): Departure | undefined {
    return this.#departure;
  }

  /** Public clients waiting for this service to dial back. */
  get waiting(): number {
    return this.#pending.size;
  }

  /** What the end-to-end probes say of this service's data path (docs/protocol.md, probes). */
  get probe(): ProbeStatus {
    return this.#prober?.status ?? NOT_PROBED;
  }

  /** Sends OK and starts serving: control lines, heartbeat, then the clients at the door. */
  start(ok: Message, head: Buffer): void {
    sendMessage(this.#control, ok);
    // The control socket is half-open capable like every relay socket, so a FIN must
    // end the session explicitly; 'close' covers resets and local destroys.
    this.#control.once('end', () => this.close('service closed the control connection'));
    this.#control.once('close', () => this.close('control connection closed'));
    readLines(
      this.#control,
      head,
      parseServiceLine,
      (msg) => this.#onControlMessage(msg),
      (failure) => this.close(`bad control line: ${failure.reason}`, refusalReply(failure.code, failure.reason)),
    );
    this.#scheduleHeartbeat();
    this.#prober = startProber(this.#host, this.features, this.log, (token) => this.#sendControl({ kind: 'PROBE', token }));
    this.#door.open(this);
  }

  #scheduleHeartbeat(): void {
    const intervalMs = this.#host.options.heartbeatMs;
    this.#heartbeat = this.#host.clock.setTimeout(() => {
      if (this.closed) return;
      if (this.#host.clock.now() - this.#lastHeard > HEARTBEAT_MISSES * intervalMs) {
        this.close(`no heartbeat for ${HEARTBEAT_MISSES * intervalMs} ms`);
        return;
      }
      if (this.#writer.fullForMs() > HEARTBEAT_MISSES * intervalMs) return this.#notReading();
      this.#sendControl({ kind: 'PING' });
      this.#scheduleHeartbeat();
    }, intervalMs);
  }

  /** Writes to the control connection unless the service has stopped reading it (see ControlWriter). */
  #sendControl(msg: Message): void {
    if (!this.#writer.send(msg)) this.#notReading();
  }

  #notReading(): void {
    this.close('service is not reading its control connection', refusalReply('limit', 'control connection not read'));
  }

  #onControlMessage(msg: ServiceMessage): void {
    this.#lastHeard = this.#host.clock.now();
    // Clients set aside while the service was silent get their turn now it speaks.
    if (this.#door.heldCount > 0) this.#door.offerHeld();
    if (msg.kind === 'PONG') return;
    if (msg.kind === 'PING') {
      this.#sendControl({ kind: 'PONG' });
      return;
    }
    if (msg.kind === 'LEAVE') {
      this.close('service left for good', undefined, 'left');
      return;
    }
    this.close(`unexpected ${msg.kind} on control connection`, refusalReply('bad-line', `${msg.kind} is not valid here`));
  }

  /** A public client for this service, fresh from the door or held there until now. */
  takeClient(client: Socket): void {
    const from = clientAddressOf(client);
    const { stats, options: limits } = this.#host;
    if (this.closed) return this.#holdAtDoor(client);
    if (from === undefined) return resetSocket(client);
    if (this.#clients >= limits.maxClientsPerService) {
      return this.#refuseClient(client, 'clients', `over ${limits.maxClientsPerService} clients`);
    }
    if (stats.clientsTaken >= limits.maxTunnels) return this.#refuseClient(client, 'tunnels', `over ${limits.maxTunnels} tunnels in all`);
    if (this.tenant?.admitsClient() === false) {
      return this.#refuseClient(client, 'tenant-clients', `tenant ${this.tenant.name} is at its maxClients of ${this.tenant.limits.maxClients}`);
    }
    const line = clientLine(client);
    const idle = line === undefined ? undefined : this.#takeIdle();
    if (idle !== undefined && line !== undefined) {
      this.#countClient(client);
      sendMessageBeforeData(idle, line);
      stats.observeDialback(0);
      this.#host.openTunnel(this, client, idle, Buffer.alloc(0));
      return;
    }
    if (this.#writer.full) {
      this.#host.refused('control-busy', { client: from.address }, 'public client refused: control connection busy (the service is slow to read it)', this.log);
      return resetSocket(client);
    }
    if (this.#pending.size + this.#door.heldCount >= limits.maxPendingPerService) {
      return this.#refuseClient(client, 'pending', `over ${limits.maxPendingPerService} pending dial-backs`);
    }
    this.#countClient(client);
    const entry = this.#host.dialbacks.add(this, client);
    this.#pending.add(entry.token);
    this.#sendControl({ kind: 'CONNECT', token: entry.token, clientAddress: from.address, clientPort: from.port });
  }

  #countClient(client: Socket): void {
    const counted = client as CountedClient;
    // on, not once: 'close' comes once anyway, and once() would wrap the listener in a
    // new closure. A client that was counted before (and waited at a door since) has it.
    if (!(kCountedBy in counted)) client.on('close', uncountClient);
    counted[kCountedBy] = this;
    this.#clients++;
    if (this.tenant !== undefined) this.tenant.clients++;
    this.#host.stats.clientsTaken++;
  }

  /**
   * Back to the door, to wait for a registration, no longer counted as taken: when it is
   * offered again, the limits must not count it against itself.
   */
  #holdAtDoor(client: Socket): void {
    releaseCount(client as CountedClient);
    this.#door.hold(client);
  }

  /** A client this session counted closed, or went back to the door (see releaseCount). */
  clientGone(): void {
    this.#clients--;
    this.#host.stats.clientsTaken--;
    if (this.tenant !== undefined) this.tenant.clients--;
  }

  #refuseClient(client: Socket, reason: string, detail: string): void {
    this.#host.refused(reason, { client: clientAddressOf(client)?.address }, `public client refused: ${detail}`, this.log);
    // A reset, as every other refusal of a public client: a FIN would read as a server
    // that answered nothing and finished.
    resetSocket(client);
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
    this.#host.stats.observeDialback((this.#host.clock.monotonic() - entry.startedAt) / 1000);
    sendMessageBeforeData(data, line);
    this.#host.openTunnel(this, entry.client, data, head);
  }

  dialbackExpired(entry: PendingClient<ServiceSession>): void {
    this.#pending.delete(entry.token);
    // Not a word from the service since the CONNECT: its host may have died silently.
    // The heartbeat decides; meanwhile the client waits at the door, not closed.
    if (this.#lastHeard < entry.since && !this.closed) {
      this.#holdAtDoor(entry.client);
      return;
    }
    // At EMFILE the runtime closes new connections unseen, the dial-back among them: say so.
    const [reason, why] = descriptorFree() ? ['dialback-timeout', ''] : ['fds', ' (the relay is out of file descriptors: the dial-back may have been dropped)'];
    this.#host.refused(reason, { client: clientAddressOf(entry.client)?.address }, `service did not dial back in time${why}; client reset`, this.log);
    // A reset, as for every public client refused: a FIN would read as a server that
    // answered nothing and finished.
    resetSocket(entry.client);
  }

  /** Parks a prewarmed data connection; false when the pool is full or we are closing. */
  addIdle(socket: Socket): boolean {
    if (this.closed || this.#idle.size >= this.#host.options.maxWarmPerService) return false;
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

  /**
   * Ends the registration; open tunnels go on. `farewell` is a last line for the
   * service. Clients still waiting for a dial-back go back to the door, to wait for the
   * next registration, unless the service left for good: then they are reset.
   */
  close(reason: string, farewell?: string, departure: Departure = 'gone'): void {
    if (this.closed) return;
    this.#departure = departure;
    this.#host.clock.clearTimeout(this.#heartbeat);
    this.#prober?.stop();
    this.#door.vacate(this);
    for (const token of this.#pending) {
      const client = this.#host.dialbacks.take(token)?.client;
      if (client === undefined) continue;
      if (departure === 'left') resetSocket(client);
      else this.#holdAtDoor(client);
    }
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
