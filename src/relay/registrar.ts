import type { Server, Socket } from 'node:net';
import type { Clock } from '../clock.js';
import type { RelayOptions } from '../config/defaults.js';
import type { Logger } from '../log.js';
import { refuse, refusalReply, type FirstLine } from '../net/lines.js';
import { plainAddress } from '../protocol/addresses.js';
import { newToken } from '../protocol/auth.js';
import { formatMessage } from '../protocol/format.js';
import { FEATURES, PROTOCOL_VERSION, type ErrorCode, type Feature, type ServiceMessage } from '../protocol/messages.js';
import type { DialbackRegistry } from './dialbacks.js';
import type { Overview } from '../monitor/overview.js';
import { leaseKey, type LeaseRecord, type LeaseStore } from '../leases/lease-store.js';
import { claimPort } from '../leases/claim-port.js';
import { rethrowUnlessOutOfFds } from '../net/out-of-fds.js';
import { PortPool, type ReservationEnd } from '../leases/port-pool.js';
import type { ProbeTokens } from './probes.js';
import { PublicDoor } from './public-door.js';
import { ServiceSession, type SessionHost } from './service-session.js';
import type { RelayStats } from '../monitor/stats.js';
import { challenge, challenges } from '../access/service-auth.js';
import { Tenancy, type TenantAccount, type TenantGrant } from '../access/tenancy.js';
import { resetSocket } from '../net/splice.js';

type Hello = ServiceMessage & { kind: 'HELLO' };

/** What the registration path needs from the relay around it. */
export interface RegistrarHost {
  readonly log: Logger;
  readonly stats: RelayStats;
  readonly clock: Clock;
  readonly options: RelayOptions;
  readonly dialbacks: DialbackRegistry<ServiceSession>;
  readonly probes: ProbeTokens;
  /** What the dashboard shows; told of every registration, departure and service away. */
  readonly overview: Overview;
  readonly dataPort: number;
  readonly shuttingDown: boolean;
  /** Reads the next line of a connection that is still in its handshake (bounded, evictable). */
  readHandshakeLine(socket: Socket, head: Buffer): Promise<FirstLine<ServiceMessage>>;
  /** Listens on a public port; undefined when another program holds it; rejects with OutOfFdsError. */
  listenPublic(port: number): Promise<Server | undefined>;
  openTunnel(session: ServiceSession, client: Socket, data: Socket, head: Buffer): void;
  refused(reason: string, fields: Record<string, unknown>, message: string, log?: Logger): void;
  /** Applies the per-address limits to a new public client; `maxClientsPerIp` overrides the relay's. */
  admitPublic(client: Socket, port: number, maxClientsPerIp?: number): boolean;
}

/**
 * The registration path and the registrations it made: authenticates a service,
 * replaces a stale registration with the same resume key, claims its public port
 * (its old one when its key holds a lease), makes the lease durable, then starts the
 * session. Owns every public port's door and the lease table, so a departed service's
 * port keeps listening, and holding its clients, until the service is back or its
 * grace is over.
 */
export class Registrar implements SessionHost {
  readonly #host: RegistrarHost;
  readonly #store: LeaseStore;
  readonly #ports: PortPool;
  readonly #doors = new Map<number, PublicDoor>();
  readonly #services = new Set<ServiceSession>();
  readonly #byWarmToken = new Map<string, ServiceSession>();
  readonly #byKey = new Map<string, ServiceSession>();
  /** The dashboard entry of each door whose service is away (within its grace), by port. */
  readonly #awayEntries = new Map<number, string>();
  /** With --tenants: who may register, and within which limits. */
  readonly #tenancy: Tenancy | undefined;
  #registering = 0;
  #nextServiceId = 1;

  constructor(host: RegistrarHost, store: LeaseStore) {
    this.#host = host;
    this.#store = store;
    const options = host.options;
    this.#ports = new PortPool(options.ports ?? { first: options.port + 1, last: 65535 }, host.clock, (port, _key, why) => this.#reservationEnded(port, why));
    this.#tenancy = options.tenantsFile === undefined ? undefined : new Tenancy(options.tenantsFile, this.#ports.range, host.log);
    if (this.#tenancy !== undefined) host.stats.tenantFigures = () => this.#tenancy?.figures(this.#ports) ?? [];
    if (this.#tenancy !== undefined && store.shareTenantClients !== undefined) this.#tenancy.shareClients((local) => store.shareTenantClients!(local));
  }

  get log(): Logger {
    return this.#host.log;
  }
  get stats(): RelayStats {
    return this.#host.stats;
  }
  get clock(): Clock {
    return this.#host.clock;
  }
  get options(): RegistrarHost['options'] {
    return this.#host.options;
  }
  get dialbacks(): DialbackRegistry<ServiceSession> {
    return this.#host.dialbacks;
  }
  get probes(): ProbeTokens {
    return this.#host.probes;
  }
  get portRange(): { first: number; last: number } {
    return this.#ports.range;
  }
  get services(): ReadonlySet<ServiceSession> {
    return this.#services;
  }

  openTunnel(session: ServiceSession, client: Socket, data: Socket, head: Buffer): void {
    this.#host.openTunnel(session, client, data, head);
  }

  refused(reason: string, fields: Record<string, unknown>, message: string, log?: Logger): void {
    this.#host.refused(reason, fields, message, log);
  }

  /** Per-address admission of a public client; a tenant's maxClientsPerIp replaces the relay-wide one on its ports. */
  admit(client: Socket, port: number): boolean {
    const tenant = this.#ports.tenantOf(port);
    const limit = tenant === undefined ? undefined : this.#tenancy?.limitsOf(tenant)?.maxClientsPerIp;
    return this.#host.admitPublic(client, port, limit);
  }

  sessionByWarmToken(token: string): ServiceSession | undefined {
    return this.#byWarmToken.get(token);
  }

  /** Every lease, live ones with `until: null`: what a successor or the state file needs. */
  leaseSnapshot(): LeaseRecord[] {
    return this.#ports.snapshot();
  }

  /**
   * Takes over leases made elsewhere (the state file, a previous worker): each port is
   * reserved for its key and its door opens at once, holding clients until the service
   * registers again. A port another program holds now keeps its reservation only.
   */
  async installLeases(records: LeaseRecord[]): Promise<void> {
    const now = this.#host.clock.now();
    for (const record of records) {
      const until = record.until ?? now + this.#host.options.resumeGraceMs;
      // A lease of a tenant no longer in the file is not kept for anyone.
      const gone = record.tenant !== undefined && this.#tenancy?.has(record.tenant) === false;
      if (until <= now || gone || this.#doors.has(record.port) || !this.#ports.reserve(record.port, record.key, until, record.tenant)) continue;
      const server = await this.#host.listenPublic(record.port).catch(rethrowUnlessOutOfFds);
      if (server === null) {
        this.#host.refused('fds', { publicPort: record.port }, 'out of file descriptors: a leased public port could not be opened');
        continue;
      }
      if (server === undefined) {
        this.#host.log.warn({ publicPort: record.port }, 'a leased public port is held by another program; its service will get another port');
        continue;
      }
      // The lease may have ended while we waited for listen().
      if (!this.#ports.isReserved(record.port)) server.close();
      else this.#addDoor(record.port, server);
    }
    await this.#persist();
  }

  /** A client held by a previous worker for one of our ports. */
  adoptHeldClient(port: number, client: Socket): void {
    const door = this.#doors.get(port);
    if (door === undefined) {
      this.#host.refused('hold-timeout', { publicPort: port }, 'handed-over client reset: its port has no lease here');
      resetSocket(client);
      return;
    }
    if (door.owner !== undefined) door.owner.takeClient(client);
    else door.hold(client);
  }

  async register(socket: Socket, hello: Hello, head: Buffer): Promise<void> {
    const peer = socket.remoteAddress;
    if (hello.version !== PROTOCOL_VERSION) {
      return this.#refuse(socket, 'version', `relay speaks protocol ${PROTOCOL_VERSION}, service sent HELLO ${hello.version}`, peer);
    }
    let rest = head;
    let grant: TenantGrant | undefined;
    const gate = { secret: this.#host.options.secret, tenancy: this.#tenancy };
    if (challenges(gate)) {
      const proven = await challenge(gate, hello.tenant, socket, (s, h) => this.#host.readHandshakeLine(s, h), head);
      if (!proven.ok) {
        if (proven.code === 'closed') return void socket.destroy();
        return this.#refuse(socket, proven.code, proven.reason, peer, hello.tenant);
      }
      ({ rest, grant } = proven);
    }
    const tenant = grant?.account;
    const resume = hello.resume ?? newToken();
    const key = leaseKey(resume, tenant?.name);
    // The same service on a new control connection (a reconnect before the relay saw the
    // old one die, or a second process with the same resume file): the newest wins, and
    // takes the old one's slot, so this works even at --max-services.
    const previous = this.#byKey.get(key);
    if (this.#services.size + this.#registering - (previous === undefined ? 0 : 1) >= this.#host.options.maxServices) {
      return this.#refuse(socket, 'limit', `relay has its maximum of ${this.#host.options.maxServices} services`, peer);
    }
    if (tenant !== undefined && !this.#tenancy!.admitService(tenant, this.#ports, key, previous !== undefined || this.#ports.reservedPortOf(key) !== undefined)) {
      return this.#refuse(socket, 'limit', `tenant ${tenant.name} has its maximum of ${tenant.limits.maxServices} services (reservations included)`, peer);
    }
    if (tenant !== undefined && !(await this.#admitFleetWide(tenant, key))) {
      return this.#refuse(socket, 'limit', `tenant ${tenant.name} has its maximum of ${tenant.limits.maxServices} services across the fleet`, peer);
    }
    if (previous !== undefined) {
      const farewell = previous.features.has('superseded') ? refusalReply('superseded', 'another control connection registered with this resume key') : undefined;
      previous.close('superseded by a new control connection', farewell);
    }
    this.#registering++;
    if (tenant !== undefined) tenant.services++;
    let started = false;
    try {
      const port = await claimPort(this.#ports, this.#store, (candidate) => this.#openDoor(candidate), hello.port, key, tenant?.scope).catch(rethrowUnlessOutOfFds);
      if (port === null) return this.#refuseOutOfFds(socket, peer);
      if (port === 'unreachable') return this.#refuse(socket, 'limit', 'the fleet cannot agree on a port now (etcd unreachable); try again', peer);
      if (port === undefined) {
        tenant?.refused('ports');
        return this.#refuse(socket, 'limit', `no free public port in the ${tenant === undefined ? 'relay' : `tenant ${tenant.name}'s`} range`, peer);
      }
      // The lease is on disk before the service hears of its port, so no crash after
      // OK can let a stranger take it.
      await this.#persist();
      // A reload while the port was claimed may have revoked what this service proved.
      if (grant !== undefined && !Tenancy.valid(grant)) {
        this.#ports.release(port);
        this.#closeDoor(port, 'its tenant was revoked during the registration');
        void this.#persist();
        return this.#refuse(socket, 'auth', 'authentication failed: tenant credentials revoked', peer, hello.tenant);
      }
      if (socket.destroyed || this.#host.shuttingDown) {
        this.#ports.release(port, key, this.#host.options.resumeGraceMs);
        void this.#persist();
        if (this.#host.shuttingDown) this.#refuse(socket, 'shutdown', 'relay is shutting down', peer);
        return;
      }
      this.#startSession(socket, hello, { port, key, resume, grant }, rest);
      started = true;
    } finally {
      this.#registering--;
      if (tenant !== undefined && !started) tenant.services--;
    }
  }

  /**
   * In a fleet a tenant's services are counted over every node (its keys in etcd, which
   * outlive a departure for the grace, as reservations do here). When the store cannot
   * be asked, the node's own count above stands.
   */
  async #admitFleetWide(tenant: TenantAccount, key: string): Promise<boolean> {
    const max = tenant.limits.maxServices;
    if (max === undefined || this.#store.tenantKeys === undefined) return true;
    const keys = await this.#store.tenantKeys(tenant.name).catch(() => undefined);
    if (keys === undefined || keys.filter((other) => other !== key).length < max) return true;
    tenant.refused('services');
    return false;
  }

  /** The door of a port the pool says we may have: ours already (reserved for this key), or a new listener. */
  async #openDoor(port: number): Promise<boolean> {
    if (this.#doors.has(port)) return true;
    const server = await this.#host.listenPublic(port);
    if (server === undefined) return false;
    this.#addDoor(port, server);
    return true;
  }

  #addDoor(port: number, server: Server): PublicDoor {
    const door = new PublicDoor(this, port, server, this.#host.log.child({ publicPort: port }));
    this.#doors.set(port, door);
    return door;
  }

  #closeDoor(port: number, reason: string): void {
    this.#doors.get(port)?.close(reason);
    this.#doors.delete(port);
  }

  #startSession(socket: Socket, hello: Hello, claimed: { port: number; key: string; resume: string; grant: TenantGrant | undefined }, rest: Buffer): void {
    const door = this.#doors.get(claimed.port);
    if (door === undefined) throw new Error(`no door for claimed port ${claimed.port}`);
    const offered = new Set<Feature>(FEATURES);
    const features = new Set((hello.features ?? []).filter((feature) => offered.has(feature)));
    const identity = {
      id: `s${this.#nextServiceId++}`,
      port: claimed.port,
      key: claimed.key,
      warmToken: hello.warm !== undefined && hello.warm > 0 ? newToken() : undefined,
      features,
      tenant: claimed.grant?.account,
    };
    const session = new ServiceSession(this, identity, socket, door);
    if (claimed.grant !== undefined) this.#tenancy?.bind(session, claimed.grant);
    this.#services.add(session);
    if (identity.warmToken !== undefined) this.#byWarmToken.set(identity.warmToken, session);
    this.#byKey.set(identity.key, session);
    this.stats.servicesActive++;
    this.stats.servicesRegistered++;
    const host = this.#host.options.publicHost ?? hello.host ?? plainAddress(socket.localAddress ?? 'localhost');
    session.log.info({ peer: socket.remoteAddress, publicHost: host, asked: hello.port, held: door.heldCount, features: [...features] }, 'service registered');
    this.#forgetAwayEntry(claimed.port);
    this.#host.overview.serviceRegistered(session, host, claimed.port, session.tenant?.name);
    session.start(
      {
        kind: 'OK',
        host,
        port: claimed.port,
        dataPort: this.#host.dataPort,
        heartbeatMs: this.#host.options.heartbeatMs,
        resume: claimed.resume,
        ...(identity.warmToken === undefined ? {} : { warmToken: identity.warmToken }),
        // Only to a service that listed features: an older one never sees the option.
        ...(hello.features === undefined ? {} : { features: [...features] }),
        ...(features.has('fleet') && this.#store.nodes !== undefined ? { nodes: this.#store.nodes() } : {}),
      },
      rest,
    );
  }

  sessionClosed(session: ServiceSession): void {
    this.#services.delete(session);
    if (session.warmToken !== undefined) this.#byWarmToken.delete(session.warmToken);
    if (this.#byKey.get(session.key) === session) this.#byKey.delete(session.key);
    this.stats.servicesActive--;
    if (session.tenant !== undefined) session.tenant.services--;
    // Stopping or handing over: the leases stay as they are, for the next process.
    if (this.#host.shuttingDown) {
      this.#host.overview.serviceLeft(session.id);
      return;
    }
    if (session.departure === 'left') {
      this.#host.overview.serviceLeft(session.id);
      this.#ports.release(session.port);
      this.#closeDoor(session.port, 'its service left for good');
    } else {
      // Still the port's service for the dashboard, shown as away, until it is back or its grace ends.
      this.#host.overview.setHeld(session.id, true);
      this.#awayEntries.set(session.port, session.id);
      this.#ports.release(session.port, session.key, this.#host.options.resumeGraceMs);
    }
    void this.#persist();
  }

  #forgetAwayEntry(port: number): void {
    const id = this.#awayEntries.get(port);
    if (id === undefined) return;
    this.#awayEntries.delete(port);
    this.#host.overview.serviceLeft(id);
  }

  #reservationEnded(port: number, why: ReservationEnd): void {
    if (why === 'evicted') {
      this.#host.stats.reservationsEvicted++;
      this.#host.log.warn({ publicPort: port }, 'reservation released early: a new service found no free port');
    }
    this.#forgetAwayEntry(port);
    const reason = { evicted: 'reservation released early for a new service', expired: 'service not back within its grace', revoked: 'its tenant was removed, or no longer has this port' }[why];
    this.#closeDoor(port, reason);
    void this.#persist();
  }

  #persist(): Promise<void> {
    return this.#store.save(() => this.#ports.snapshot());
  }

  pauseLeaseWrites(): Promise<void> {
    return this.#store.pause();
  }

  resumeLeaseWrites(): void {
    this.#store.resume(() => this.#ports.snapshot());
  }

  /**
   * Ends every registration for a stop or a handover: each service is told (REJOIN to
   * those that understand it when `rejoin`, else SHUTDOWN), every door stops accepting,
   * and the clients held at the doors are returned (for a successor) or reset.
   */
  closeAll(rejoin: boolean): { port: number; client: Socket }[] {
    for (const session of [...this.#services]) {
      const line = rejoin && session.features.has('rejoin') ? formatMessage({ kind: 'REJOIN' }) : formatMessage({ kind: 'SHUTDOWN' });
      session.close(rejoin ? 'relay handing over to a new worker' : 'relay shutting down', line);
    }
    const held: { port: number; client: Socket }[] = [];
    for (const [port, door] of this.#doors) for (const client of door.stopAccepting()) held.push({ port, client });
    this.#doors.clear();
    return held;
  }

  /**
   * SIGHUP: reads the tenants file again. Registrations of a removed tenant, or proven
   * with a secret no longer listed, end at once with ERR auth (their services stop
   * retrying), a removed tenant's reservations end, and `cut` resets the open tunnels
   * it is given a test for. Changed limits apply to what comes next.
   */
  reloadTenants(cut: (revoked: (owner: object) => boolean) => void): void {
    const tenancy = this.#tenancy;
    if (tenancy === undefined) return void this.#host.log.info('SIGHUP: nothing to reload (the relay runs without --tenants)');
    const removed = tenancy.reload();
    if (removed === undefined) return;
    const revoked = (owner: object): boolean => tenancy.revoked(owner);
    for (const session of [...this.#services]) {
      if (!revoked(session)) continue;
      session.close('tenant credentials revoked by a reload', refusalReply('auth', 'authentication failed: tenant credentials revoked'), 'left');
    }
    for (const name of removed) this.#ports.revokeTenant(name);
    cut(revoked);
  }

  #refuseOutOfFds(socket: Socket, peer: string | undefined): void {
    this.#host.refused('fds', { peer }, 'connection refused: out of file descriptors (raise ulimit -n)');
    refuse(socket, refusalReply('limit', 'out of file descriptors'));
  }

  #refuse(socket: Socket, code: ErrorCode, reason: string, peer: string | undefined, tenant?: string): void {
    this.#host.refused(code, tenant === undefined ? { peer } : { peer, tenant }, `connection refused: ${reason}`);
    refuse(socket, refusalReply(code, reason));
  }
}
