import type { Socket } from 'node:net';
import type { Timer } from '../clock.js';
import { HEARTBEAT_MISSES } from '../config/defaults.js';
import type { Logger } from '../log.js';
import type { TenantAccount } from '../access/tenancy.js';
import type { Place } from '../leases/lease-store.js';
import type { ServiceFigures } from '../monitor/overview.js';
import { NOT_PROBED, type ProbeStatus } from '../monitor/probe-status.js';
import { readLines, refuse, refusalReply, sendMessage, sendMessageBeforeData } from '../net/lines.js';
import { resetSocket } from '../net/splice.js';
import type { AccessList } from '../protocol/cidr.js';
import type { Feature, Message, ServiceMessage } from '../protocol/messages.js';
import { parseServiceLine } from '../protocol/parse.js';
import { clientAddressOf, clientLine } from './client-address.js';
import { countClient, releaseCount } from './client-count.js';
import { refuseClient, refuseExpired, withinClientLimits } from './client-refusals.js';
import type { RelayContext } from './context.js';
import { ControlWriter } from './control-writer.js';
import { startProber, type ServiceProber } from './prober.js';
import { placeBindings, type DoorOwner, type SessionDoor } from './public-door.js';
import type { ClientOwner, PendingClient } from './tokens.js';
import { WarmConnections } from './warm-connections.js';

interface SessionIdentity {
  id: string;
  /** Its public port, or its host on the names ports. */
  place: Place;
  /** The port its clients reach: its own, or the first names port. */
  port: number;
  /** The lease key: a hash of the resume key, never the key itself. */
  key: string;
  warmToken: string | undefined;
  features: ReadonlySet<Feature>;
  tenant?: TenantAccount | undefined;
  figures: ServiceFigures;
  access?: AccessList | undefined;
  member?: string | undefined;
}

/**
 * How a registration ended, which decides what happens to its port: kept for the key
 * (`gone`), freed (`left`), or served by another worker of this relay now (`moved`: the
 * clients waiting for a dial-back go to the door, which hands them over).
 */
type Departure = 'gone' | 'left' | 'moved';

/**
 * One registered service on the relay: its control connection, the public clients
 * waiting for it to dial back, and its prewarmed data connections. The public port is
 * not the session's but its door's, which outlives it: clients arriving while the
 * service is away wait there for the next registration with the same key. Open
 * tunnels are not the session's either, so a control reconnect never cuts a client
 * already talking to the service.
 */
export class ServiceSession implements DoorOwner, ClientOwner {
  readonly id: string;
  readonly place: Place;
  readonly port: number;
  readonly key: string;
  readonly warmToken: string | undefined;
  readonly features: ReadonlySet<Feature>;
  /** With --tenants: its tenant, whose limits (maxClientsPerIp too) apply to its clients. */
  readonly tenant: TenantAccount | undefined;
  readonly figures: ServiceFigures;
  /** Who may connect, as its HELLO's allow=/deny= said. */
  readonly access: AccessList | undefined;
  readonly log: Logger;
  /** A pool member's name (its control connection's address:port); undefined for a service of its own. */
  readonly member: string | undefined;
  /** Seconds from CONNECT to the dial-back, averaged over its recent clients (0 for a prewarmed one): a pool prefers the quicker. */
  recentDialbackSeconds = 0;
  readonly #ctx: RelayContext;
  readonly #control: Socket;
  readonly #writer: ControlWriter;
  readonly #door: SessionDoor<ServiceSession>;
  readonly #warm: WarmConnections;
  readonly #onClosed: (session: ServiceSession) => void;
  /** Public clients taken (spliced or waiting for their dial-back), for --max-clients. */
  #clients = 0;
  #lastHeard: number;
  #heartbeat: Timer | undefined;
  #departure: Departure | undefined;
  #prober: ServiceProber | undefined;

  constructor(ctx: RelayContext, identity: SessionIdentity, control: Socket, door: SessionDoor<ServiceSession>, onClosed: (session: ServiceSession) => void) {
    this.id = identity.id;
    this.place = identity.place;
    this.port = identity.port;
    this.key = identity.key;
    this.warmToken = identity.warmToken;
    this.features = identity.features;
    this.tenant = identity.tenant;
    this.figures = identity.figures;
    this.access = identity.access;
    this.member = identity.member;
    this.#ctx = ctx;
    this.#control = control;
    this.#writer = new ControlWriter(control, ctx.clock);
    this.#door = door;
    this.#warm = new WarmConnections(ctx.stats, ctx.options);
    this.#onClosed = onClosed;
    this.#lastHeard = ctx.clock.now();
    this.log = ctx.log.child({ service: this.id, ...placeBindings(this.place), ...(this.tenant && { tenant: this.tenant.name }), ...(this.member && { member: this.member }) });
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
    return this.#ctx.tokens.clientsOf(this);
  }

  /** Public clients taken: spliced, or waiting for the dial-back. */
  get taken(): number {
    return this.#clients;
  }

  /** Whether one more client may be taken now (a pool asks before it picks this member). */
  get canTake(): boolean {
    return !this.closed && !this.#writer.full && this.#clients < this.#ctx.options.maxClientsPerService;
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
    this.#prober = startProber(this.#ctx, this.features, this.log, (token) => this.#sendControl({ kind: 'PROBE', token }));
    this.#door.open(this);
  }

  #scheduleHeartbeat(): void {
    const { clock, options } = this.#ctx;
    const silentMs = HEARTBEAT_MISSES * options.heartbeatMs;
    this.#heartbeat = clock.setTimeout(() => {
      if (this.closed) return;
      if (clock.now() - this.#lastHeard > silentMs) return this.close(`no heartbeat for ${silentMs} ms`);
      if (this.#writer.fullForMs() > silentMs) return this.#notReading();
      this.#sendControl({ kind: 'PING' });
      this.#scheduleHeartbeat();
    }, options.heartbeatMs);
  }

  /** A line for the service that is not an answer (NODES), unless the registration has ended. */
  notify(msg: Message): void {
    if (!this.closed) this.#sendControl(msg);
  }

  /** Writes to the control connection unless the service has stopped reading it (see ControlWriter). */
  #sendControl(msg: Message): void {
    if (!this.#writer.send(msg)) this.#notReading();
  }

  #notReading(): void {
    this.close('service is not reading its control connection', refusalReply('limit', 'control connection not read'));
  }

  #onControlMessage(msg: ServiceMessage): void {
    this.#lastHeard = this.#ctx.clock.now();
    // Clients set aside while the service was silent get their turn now it speaks.
    if (this.#door.heldCount > 0) this.#door.offerHeld();
    if (msg.kind === 'PONG') return;
    if (msg.kind === 'PING') return this.#sendControl({ kind: 'PONG' });
    if (msg.kind === 'LEAVE') return this.close('service left for good', undefined, 'left');
    if (this.#door.memberSaid(this, msg)) return;
    this.close(`unexpected ${msg.kind} on control connection`, refusalReply('bad-line', `${msg.kind} is not valid here`));
  }

  /** A public client for this service, fresh from the door or held there until now. */
  takeClient(client: Socket): void {
    if (this.closed) return this.#holdAtDoor(client);
    const from = clientAddressOf(client);
    if (from === undefined) return resetSocket(client);
    if (!withinClientLimits(this.#ctx, this, client)) return;
    const servedWarm = this.#warm.serve(
      client,
      () => clientLine(client, this.#door.bound),
      (idle, early) => {
        this.#count(client);
        this.#ctx.stats.observeDialback(0);
        this.recentDialbackSeconds *= 0.7;
        this.#ctx.tunnels.open(this, client, idle, Buffer.alloc(0), early);
      },
    );
    if (servedWarm) return;
    if (this.#writer.full) {
      this.#ctx.refusals.count('control-busy', { client: from.address }, 'public client refused: control connection busy (the service is slow to read it)', this.log);
      return resetSocket(client);
    }
    const { maxPendingPerService } = this.#ctx.options;
    if (this.waiting + this.#door.heldCount >= maxPendingPerService) {
      refuseClient(this.#ctx, this.log, client, 'pending', `over ${maxPendingPerService} pending dial-backs`);
      return;
    }
    this.#count(client);
    const entry = this.#ctx.tokens.addClient(this, client);
    this.#sendControl({ kind: 'CONNECT', token: entry.token, clientAddress: from.address, clientPort: from.port });
  }

  #count(client: Socket): void {
    countClient(client, this);
    this.#clients++;
    if (this.tenant !== undefined) this.tenant.clients++;
    this.#ctx.stats.clientsTaken++;
  }

  /** Back to the door, no longer counted as taken: offered again, the limits must not count it against itself. */
  #holdAtDoor(client: Socket): void {
    releaseCount(client);
    this.#door.giveBack(client, this);
  }

  /** Whether its lists (HELLO allow=, deny=), its tenant's as loaded now and the relay's still let this client in. */
  admits(client: Socket): boolean {
    return this.#ctx.admission.allows(clientAddressOf(client)?.address ?? '', [this.tenant?.spec.access, this.access]);
  }

  /** A client this session counted closed, or went back to the door (see client-count.ts). */
  clientGone(): void {
    this.#clients--;
    this.#ctx.stats.clientsTaken--;
    if (this.tenant !== undefined) this.tenant.clients--;
  }

  /** The service dialed back for a client of ours: splice them. */
  dialedBack(entry: PendingClient<ClientOwner>, data: Socket, head: Buffer): void {
    const line = clientLine(entry.client, this.#door.bound);
    // Defensive: a waiting client is not read, so its leaving is normally only noticed
    // once spliced (the service then sees the reset); this catches a client already gone.
    if (line === undefined || entry.client.destroyed) {
      refuse(data, refusalReply('bad-token', 'the client left before the dial-back'));
      return;
    }
    const seconds = this.#ctx.tokens.secondsWaited(entry);
    this.recentDialbackSeconds = 0.7 * this.recentDialbackSeconds + 0.3 * seconds;
    this.#ctx.stats.observeDialback(seconds);
    sendMessageBeforeData(data, line);
    this.#ctx.tunnels.open(this, entry.client, data, head);
  }

  dialbackExpired(entry: PendingClient<ClientOwner>): void {
    // Not a word from the service since the CONNECT: its host may have died silently.
    // The heartbeat decides; meanwhile the client waits at the door, not closed. A pool
    // offers it to another member at once.
    if (this.#door.pooled || (this.#lastHeard < entry.since && !this.closed)) return this.#holdAtDoor(entry.client);
    refuseExpired(this.#ctx, this.log, entry.client);
  }

  /** Parks a prewarmed data connection; else the reason it cannot be: a limit, or the registration closing. */
  addIdle(socket: Socket): string | undefined {
    return this.closed ? 'the registration is closing' : this.#warm.park(socket);
  }

  /**
   * Ends the registration; open tunnels go on. `farewell` is a last line for the
   * service. Clients still waiting for a dial-back go back to the door (or its pool), to
   * wait for the next registration, unless the service left for good: then they are reset.
   */
  close(reason: string, farewell?: string, departure: Departure = 'gone'): void {
    if (this.closed) return;
    this.#departure = departure;
    this.#ctx.clock.clearTimeout(this.#heartbeat);
    this.#prober?.stop();
    this.#door.vacate(this);
    for (const { client } of this.#ctx.tokens.takeClientsOf(this)) {
      if (departure === 'left' && !this.#door.pooled) resetSocket(client);
      else this.#holdAtDoor(client);
    }
    this.#warm.closeAll();
    if (farewell !== undefined) refuse(this.#control, farewell);
    else this.#control.destroy();
    this.log.info({ reason }, 'service left');
    this.#onClosed(this);
  }
}
