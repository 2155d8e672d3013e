import type { Socket } from 'node:net';
import { challenge, challenges } from '../access/service-auth.js';
import { Tenancy, type TenantAccount, type TenantGrant } from '../access/tenancy.js';
import type { TenantSpec } from '../access/tenants-file.js';
import { publicRange } from '../config/defaults.js';
import { leaseKey, type LeaseRecord, type LeaseStore, type Place } from '../leases/lease-store.js';
import { refusalReply } from '../net/lines.js';
import { newToken } from '../protocol/auth.js';
import { formatMessage } from '../protocol/format.js';
import { FEATURES, PROTOCOL_VERSION, type ErrorCode, type Feature, type ServiceMessage } from '../protocol/messages.js';
import type { ListedService } from '../monitor/overview.js';
import type { RelayContext } from './context.js';
import { claimName, endNarrowedNames, publicHostFor } from './name-claim.js';
import { claimNameOf, claimPortOf } from './place-claim.js';
import { PublicPorts, type HeldAtPort } from './public-ports.js';
import { ServiceSession } from './service-session.js';

type Hello = ServiceMessage & { kind: 'HELLO' };

/** A session's place in the order of registrations (its id is `s` and a count). */
const serial = (service: { id: string }): number => Number(service.id.slice(1));

/** A registration that passed its checks, on its way to a port. */
interface Admitted {
  hello: Hello;
  key: string;
  resume: string;
  grant: TenantGrant | undefined;
  /** Bytes the service sent after its last handshake line. */
  rest: Buffer;
  /** Its address, read once at the start (for the log lines of a refusal). */
  peer: string | undefined;
}

type Refusal = { code: ErrorCode; reason: string };

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
    const listed: ListedService[] = [...this.#services].map((service) => ({ service, held: false }));
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

  async register(socket: Socket, hello: Hello, head: Buffer): Promise<void> {
    const admitted = await this.#authenticate(socket, hello, head, socket.remoteAddress);
    if (admitted === undefined) return;
    const tenant = admitted.grant?.account;
    const previous = this.#byKey.get(admitted.key);
    const refusal = await this.#overLimit(admitted.key, tenant, previous);
    if (refusal !== undefined) {
      this.#refuse(socket, refusal.code, refusal.reason, admitted.peer);
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

  /** The version and the secret (or the tenant's); undefined when the service was refused. */
  async #authenticate(socket: Socket, hello: Hello, head: Buffer, peer: string | undefined): Promise<Admitted | undefined> {
    if (hello.version !== PROTOCOL_VERSION) {
      this.#refuse(socket, 'version', `relay speaks protocol ${PROTOCOL_VERSION}, service sent HELLO ${hello.version}`, peer);
      return undefined;
    }
    let rest = head;
    let grant: TenantGrant | undefined;
    const gate = { secret: this.#ctx.options.secret, tenancy: this.#tenancy };
    if (challenges(gate)) {
      const proven = await challenge(gate, hello.tenant, socket, (s, h) => this.#ctx.handshakes.readLine(s, h), head);
      if (!proven.ok) {
        if (proven.code === 'closed') socket.destroy();
        else this.#refuse(socket, proven.code, proven.reason, peer, hello.tenant);
        return undefined;
      }
      ({ rest, grant } = proven);
    }
    const resume = hello.resume ?? newToken();
    return { hello, key: leaseKey(resume, grant?.account.name), resume, grant, rest, peer };
  }

  /**
   * The relay's and the tenant's limits on services. The same service on a new control
   * connection (a reconnect before the relay saw the old one die, or a second process
   * with the same resume file) takes the old one's slot: the newest wins, even at
   * --max-services.
   */
  async #overLimit(key: string, tenant: TenantAccount | undefined, previous: ServiceSession | undefined): Promise<Refusal | undefined> {
    const { maxServices } = this.#ctx.options;
    if (this.#services.size + this.#registering - (previous === undefined ? 0 : 1) >= maxServices) {
      return { code: 'limit', reason: `relay has its maximum of ${maxServices} services` };
    }
    if (tenant === undefined) return undefined;
    const reclaims = previous !== undefined || this.ports.reserves(key);
    if (!this.#tenancy!.admitService(tenant, this.ports.reservations, key, reclaims)) {
      return { code: 'limit', reason: `tenant ${tenant.name} has its maximum of ${tenant.limits.maxServices} services (reservations included)` };
    }
    if (!(await this.#admitFleetWide(tenant, key))) {
      return { code: 'limit', reason: `tenant ${tenant.name} has its maximum of ${tenant.limits.maxServices} services across the fleet` };
    }
    return undefined;
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

  /** Claims the port, makes the lease durable, then starts the session; false when it did not start. */
  async #claimAndStart(socket: Socket, admitted: Admitted): Promise<boolean> {
    const { hello, key, grant, peer } = admitted;
    const tenant = grant?.account;
    const named = claimName(this.#ctx, this.ports, hello, socket, key, tenant);
    if (!named.ok) return this.#refuse(socket, named.code, named.reason, peer);
    const refusal = (code: ErrorCode, reason: string): boolean => this.#refuse(socket, code, reason, peer);
    const place = named.host === undefined ? await claimPortOf(this.#ctx, this.ports, admitted, socket, refusal) : await claimNameOf(this.ports, admitted, named.host, refusal);
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
    const door = this.ports.doorOf(place);
    if (door === undefined) throw new Error(`no door for claimed place ${place}`);
    const port = typeof place === 'number' ? place : this.#ctx.options.namesPorts![0]!;
    const offered = new Set<Feature>(FEATURES);
    const features = new Set((hello.features ?? []).filter((feature) => offered.has(feature)));
    const warmToken = hello.warm !== undefined && hello.warm > 0 ? newToken() : undefined;
    const host = typeof place === 'string' ? place : publicHostFor(this.#ctx, hello, socket);
    const figures = this.#ctx.overview.figuresFor(host, port, grant?.account.name);
    const identity = { id: `s${this.#nextServiceId++}`, place, port, key, warmToken, features, tenant: grant?.account, figures };
    const session = new ServiceSession(this.#ctx, identity, socket, door, (closed) => this.#sessionClosed(closed));
    if (grant !== undefined) this.#tenancy?.bind(session, grant);
    this.#services.add(session);
    if (warmToken !== undefined) this.#byWarmToken.set(warmToken, session);
    this.#byKey.set(key, session);
    this.#ctx.stats.servicesRegistered++;
    session.log.info({ peer: socket.remoteAddress, publicHost: host, asked: hello.port, held: door.heldCount, features: [...features] }, 'service registered');
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
    if (session.tenant !== undefined) session.tenant.services--;
    // Stopping or handing over: the leases stay as they are, for the next process.
    if (this.#ctx.shuttingDown) return;
    if (session.departure === 'left') {
      this.ports.left(session.place);
    } else {
      // Still the port's service for the dashboard, shown as away, until it is back or its grace ends.
      this.ports.away(session.place, session.key, session);
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
