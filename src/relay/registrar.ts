import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { Tenancy } from '../access/tenancy.js';
import type { TenantSpec } from '../access/tenants-file.js';
import { publicRange } from '../config/defaults.js';
import { leaseKey, type LeaseRecord, type LeaseStore, type Place } from '../leases/lease-store.js';
import { refusalReply } from '../net/lines.js';
import { helloAccess } from '../protocol/acl-options.js';
import { newToken } from '../protocol/auth.js';
import { joinHostPort, plainAddress } from '../protocol/addresses.js';
import { formatMessage } from '../protocol/format.js';
import { FEATURES, type ErrorCode, type Feature, type ServiceMessage } from '../protocol/messages.js';
import type { ListedService, ServiceFigures } from '../monitor/overview.js';
import { authenticate, type Admitted } from './authenticate.js';
import type { RelayContext } from './context.js';
import { claimName, endNarrowedNames, publicHostFor } from './name-claim.js';
import { KeyQueue } from './key-queue.js';
import { claimNameOf, claimPortOf } from './place-claim.js';
import { overServiceLimits } from './service-limits.js';
import { PublicPorts, type HeldAtPort } from './public-ports.js';
import { Pools } from './pools.js';
import { ServiceSession } from './service-session.js';
import { prewarmAllowed } from './warm-connections.js';

type Hello = ServiceMessage & { kind: 'HELLO' };

/** A session's place in the order of registrations (its id is `s` and a count). */
const serial = (service: { id: string }): number => Number(service.id.slice(1));

/**
 * The registration path and the registrations it made: authenticates a service,
 * replaces a stale registration with the same resume key, claims its public port
 * (its old one when its key holds a lease), makes the lease durable, then starts the
 * session. The ports and their doors are PublicPorts'; the services registered now,
 * by resume key and by prewarm key, are here.
 */
export class Registrar {
  readonly #ctx: RelayContext;
  readonly #store: LeaseStore;
  readonly ports: PublicPorts;
  readonly #services = new Set<ServiceSession>();
  readonly #byWarmToken = new Map<string, ServiceSession>();
  readonly #byKey = new Map<string, ServiceSession>();
  /** A pool key's lease key never equals a resume key's (see #authenticate). */
  readonly #pools: Pools;
  /** One registration at a time per key (see KeyQueue). */
  readonly #queue = new KeyQueue();
  /** With --tenants: who may register, and within which limits. */
  readonly #tenancy: Tenancy | undefined;
  #registering = 0;
  #nextServiceId = 1;

  /** `tenants`: the tenants file's entries, read once at start by whoever checked it. */
  constructor(ctx: RelayContext, store: LeaseStore, tenants: TenantSpec[] | undefined) {
    this.#ctx = ctx;
    this.#store = store;
    const { tenantsFile } = ctx.options;
    this.#tenancy = tenantsFile === undefined ? undefined : new Tenancy(tenantsFile, publicRange(ctx.options), ctx.log, tenants);
    this.ports = new PublicPorts(ctx, store, this.#tenancy);
    this.#pools = new Pools(ctx);
    ctx.stats.poolFigures = () => this.#pools.figures(this.ports.awayServices());
    const tenancy = this.#tenancy;
    if (tenancy === undefined) return;
    ctx.stats.tenantFigures = () => tenancy.figures(this.ports.reservations);
    if (store.shareTenantClients !== undefined) tenancy.shareClients((local) => store.shareTenantClients!(local));
  }

  get services(): ReadonlySet<ServiceSession> {
    return this.#services;
  }

  /**
   * The services for the dashboard: registered now, and away with their port kept, in
   * the order they registered (ids count up).
   */
  listed(): ListedService[] {
    const listed: ListedService[] = [...this.#services].filter((service) => service.member === undefined).map((service) => ({ service, held: false }));
    listed.push(...this.#pools.listed());
    for (const service of this.ports.awayServices()) listed.push({ service, held: true });
    return listed.sort((x, y) => serial(x.service) - serial(y.service));
  }

  sessionByWarmToken(token: string): ServiceSession | undefined {
    return this.#byWarmToken.get(token);
  }

  /** Every lease, live ones with `until: null`: what a successor or the state file needs. */
  leaseSnapshot(): LeaseRecord[] {
    return this.ports.snapshot();
  }

  async register(socket: Socket, hello: Hello, head: Buffer, line?: string): Promise<void> {
    // One of several workers: a pool is served by one of them, and its members go there.
    if (hello.pool !== undefined && line !== undefined && this.#store.handOverMember !== undefined && !(socket instanceof TLSSocket)) {
      const key = leaseKey(`pool\0${hello.pool}`, this.#tenancy === undefined ? undefined : hello.tenant);
      if (await this.#store.handOverMember(key, socket, Buffer.concat([Buffer.from(`${line}\n`, 'latin1'), head]))) return;
    }
    const admitted = await authenticate(this.#ctx, this.#tenancy, socket, hello, head);
    if (admitted === undefined) return;
    await this.#queue.run(admitted.key, () => this.#admit(socket, admitted));
  }

  /** The limits, then a new member of a live pool, or a port for the key (superseding a live registration). */
  async #admit(socket: Socket, admitted: Admitted): Promise<void> {
    const tenant = admitted.grant?.account;
    const previous = admitted.pooled ? undefined : this.#byKey.get(admitted.key);
    // With several workers, the services of the others count too (asked of the master).
    const elsewhere = this.#store.servicesElsewhere === undefined ? 0 : await this.#store.servicesElsewhere(admitted.key);
    const live = this.#pools.services(this.#services.size) + this.#registering + elsewhere;
    const replaces = previous !== undefined || this.#pools.get(admitted.key) !== undefined;
    const { reservations } = this.ports;
    const limits = { maxServices: this.#ctx.options.maxServices, tenancy: this.#tenancy, reservations, reserves: (key: string) => this.ports.reserves(key), store: this.#store };
    const refusal = await overServiceLimits(limits, live, admitted.key, tenant, replaces);
    if (refusal !== undefined) {
      this.#refuse(socket, refusal.code, refusal.reason, admitted.peer);
      return;
    }
    const pool = this.#pools.get(admitted.key);
    if (pool !== undefined) {
      // Nothing to claim: the place (a port or a name) is the pool's while a member is registered.
      if (this.#ctx.shuttingDown) this.#refuse(socket, 'shutdown', 'relay is shutting down', admitted.peer);
      else if (!socket.destroyed) this.#startSession(socket, admitted, pool.place);
      return;
    }
    if (previous !== undefined) {
      const farewell = previous.features.has('superseded') ? refusalReply('superseded', 'another control connection registered with this resume key') : undefined;
      previous.close('superseded by a new control connection', farewell);
    }
    this.#registering++;
    if (tenant !== undefined) tenant.services++;
    let started = false;
    try {
      started = await this.#claimAndStart(socket, admitted);
    } finally {
      this.#registering--;
      if (tenant !== undefined && !started) tenant.services--;
    }
  }

  /** Claims the port, makes the lease durable, then starts the session; false when it did not start. */
  async #claimAndStart(socket: Socket, admitted: Admitted): Promise<boolean> {
    const { hello, key, grant, peer } = admitted;
    const tenant = grant?.account;
    const named = claimName(this.#ctx, this.ports, hello, socket, key, tenant);
    if (!named.ok) return this.#refuse(socket, named.code, named.reason, peer);
    const refusal = (code: ErrorCode, reason: string): boolean => this.#refuse(socket, code, reason, peer);
    const unreachable = this.#store.unreachable;
    const place =
      named.host === undefined ? await claimPortOf(this.#ctx, this.ports, admitted, socket, refusal, unreachable) : await claimNameOf(this.ports, admitted, named.host, refusal, unreachable);
    if (place === undefined) return false;
    // The lease is on disk before the service hears of its port, so no crash after
    // OK can let a stranger take it.
    await this.ports.persist();
    // A reload while the port was claimed may have revoked what this service proved.
    if (grant !== undefined && !Tenancy.valid(grant)) {
      this.ports.abandon(place, key, 'revoked');
      return this.#refuse(socket, 'auth', 'authentication failed: tenant credentials revoked', peer, hello.tenant);
    }
    if (socket.destroyed || this.#ctx.shuttingDown) {
      this.ports.abandon(place, key, this.#ctx.shuttingDown ? 'stopping' : 'gone');
      if (this.#ctx.shuttingDown) this.#refuse(socket, 'shutdown', 'relay is shutting down', peer);
      return false;
    }
    this.#startSession(socket, admitted, place);
    return true;
  }

  /** `place`: its public port, or its host on the names ports (then OK gives the first names port). */
  #startSession(socket: Socket, admitted: Admitted, place: Place): void {
    const { hello, key, resume, grant, rest } = admitted;
    const offered = new Set<Feature>(FEATURES);
    const features = new Set((hello.features ?? []).filter((feature) => offered.has(feature)));
    const warmToken = hello.warm !== undefined && hello.warm > 0 && prewarmAllowed(this.#ctx.options) ? newToken() : undefined;
    const host = typeof place === 'string' ? place : publicHostFor(this.#ctx, hello, socket);
    const port = typeof place === 'number' ? place : this.#ctx.options.namesPorts![0]!;
    const id = `s${this.#nextServiceId++}`;
    const door = this.ports.doorOf(place);
    if (door === undefined) throw new Error(`no door for claimed place ${place}`);
    const figures = (): ServiceFigures => this.#ctx.overview.figuresFor(host, port, grant?.account.name);
    // A pool member's clients come from its pool (made with its first member), which has the door.
    const pool = admitted.pooled ? this.#pools.poolOf(key, id, door, port, figures) : undefined;
    const member = pool === undefined ? undefined : joinHostPort(plainAddress(socket.remoteAddress ?? '?'), socket.remotePort ?? 0);
    const identity = { id, place, port, key, warmToken, features, tenant: grant?.account, figures: pool?.figures ?? figures(), member, access: helloAccess(hello) };
    const session = new ServiceSession(this.#ctx, identity, socket, pool ?? door, (closed) => this.#sessionClosed(closed));
    if (grant !== undefined) this.#tenancy?.bind(session, grant);
    this.#services.add(session);
    if (warmToken !== undefined) this.#byWarmToken.set(warmToken, session);
    if (!admitted.pooled) this.#byKey.set(key, session);
    this.#ctx.stats.servicesRegistered++;
    session.log.info({ peer: socket.remoteAddress, publicHost: host, asked: hello.port, held: door.heldCount, features: [...features], ...(pool && { pool: pool.id }) }, 'service registered');
    this.ports.back(place);
    const ok = {
      kind: 'OK',
      host,
      port,
      dataPort: this.#ctx.dataPort,
      heartbeatMs: this.#ctx.options.heartbeatMs,
      resume,
      ...(warmToken === undefined ? {} : { warmToken }),
      // Only to a service that listed features: an older one never sees the option.
      ...(hello.features === undefined ? {} : { features: [...features] }),
      ...(features.has('fleet') && this.#store.nodes !== undefined ? { nodes: this.#store.nodes() } : {}),
    } as const;
    session.start(ok, rest);
  }

  #sessionClosed(session: ServiceSession): void {
    this.#services.delete(session);
    if (session.warmToken !== undefined) this.#byWarmToken.delete(session.warmToken);
    if (this.#byKey.get(session.key) === session) this.#byKey.delete(session.key);
    // The port, its lease and the tenant's count are the pool's, until its last member is gone.
    const { pool, last } = this.#pools.memberGone(session.key);
    if (!last) return;
    if (session.tenant !== undefined) session.tenant.services--;
    // Stopping or handing over: the leases stay as they are, for the next process.
    // Moved to another worker: the port goes with its door (PublicPorts.movedAway).
    if (this.#ctx.shuttingDown || session.departure === 'moved') return;
    if (session.departure === 'left') {
      this.ports.left(session.place);
    } else {
      // Still the port's service for the dashboard, shown as away, until it is back or its grace ends.
      this.ports.away(session.place, session.key, pool ?? session);
    }
  }

  /**
   * Ends every registration for a stop or a handover: each service is told (REJOIN to
   * those that understand it when `rejoin`, else SHUTDOWN), every door stops accepting,
   * and the clients held at the doors are returned (for a successor) or reset.
   */
  closeAll(rejoin: boolean): HeldAtPort[] {
    for (const session of [...this.#services]) {
      const line = rejoin && session.features.has('rejoin') ? formatMessage({ kind: 'REJOIN' }) : formatMessage({ kind: 'SHUTDOWN' });
      session.close(rejoin ? 'relay handing over to a new worker' : 'relay shutting down', line);
    }
    return this.ports.closeAll();
  }

  /**
   * SIGHUP: reads the tenants file again. Registrations of a removed tenant, or proven
   * with a secret no longer listed, end at once with ERR auth (their services stop
   * retrying), a removed tenant's reservations end, and `cut` resets the open tunnels
   * it is given a test for. Changed limits apply to what comes next.
   */
  reloadTenants(cut: (revoked: (owner: object) => boolean) => void): void {
    const tenancy = this.#tenancy;
    if (tenancy === undefined) return void this.#ctx.log.info('SIGHUP: nothing to reload (the relay runs without --tenants)');
    const removed = tenancy.reload();
    if (removed === undefined) return;
    for (const session of [...this.#services]) {
      if (!tenancy.revoked(session)) continue;
      session.close('tenant credentials revoked by a reload', refusalReply('auth', 'authentication failed: tenant credentials revoked'), 'left');
    }
    for (const name of removed) this.ports.revokeTenant(name);
    const narrowed = endNarrowedNames(this.#ctx, this.#services, this.ports, tenancy);
    cut((owner) => tenancy.revoked(owner) || narrowed.has(owner));
  }

  #refuse(socket: Socket, code: ErrorCode, reason: string, peer: string | undefined, tenant?: string): false {
    this.#ctx.refusals.reply(socket, code, reason, tenant === undefined ? { peer } : { peer, tenant });
    return false;
  }
}
