import type { Server, Socket } from 'node:net';
import type { Tenancy, TenantReservations } from '../access/tenancy.js';
import { publicRange } from '../config/defaults.js';
import { claimPort, type PortClaim } from '../leases/claim-port.js';
import type { WatchedService } from '../monitor/overview.js';
import type { LeaseRecord, LeaseStore, Place } from '../leases/lease-store.js';
import { PortPool, type ClaimScope, type ReservationEnd } from '../leases/port-pool.js';
import { OutOfFdsError } from '../errors.js';
import { resetSocket } from '../net/splice.js';
import type { AccessList } from '../protocol/cidr.js';
import type { RelayContext } from './context.js';
import { listenPublic } from './listeners.js';
import { NameDoors, type NameTake } from './name-doors.js';
import { placeBindings, PublicDoor } from './public-door.js';

/** A public client held at the door of `port` (a port, or a host on the names ports), on its way to a successor or to be reset. */
export type HeldAtPort = { port: Place; client: Socket };

const RESERVATION_END: Record<ReservationEnd, string> = {
  evicted: 'reservation released early for a new service',
  expired: 'service not back within its grace',
  revoked: 'its tenant was removed, or no longer has this port (or name)',
};

const isName = (place: Place): place is string => typeof place === 'string';

/**
 * The relay's public ports: which key owns which port (the pool, its lease store) and each
 * one's door, open from a key's first claim until the key loses it (left for good, or its
 * grace ended), holding clients while its service is away. A key's place may instead be a
 * host on the names ports (`NameDoors`), kept in the same way; a `Place` is either.
 */
export class PublicPorts {
  readonly #ctx: RelayContext;
  readonly #store: LeaseStore;
  readonly #tenancy: Tenancy | undefined;
  readonly #pool: PortPool;
  readonly #doors = new Map<number, PublicDoor>();
  /** Ports whose door closed here, not listened on since: the master may still hold its socket, so the next listen asks it. */
  readonly #closedHere = new Set<number>();
  readonly #names: NameDoors;
  /** The service of each door whose service is away (within its grace), by port or host: the dashboard still lists it. */
  readonly #away = new Map<Place, WatchedService>();

  constructor(ctx: RelayContext, store: LeaseStore, tenancy: Tenancy | undefined) {
    this.#ctx = ctx;
    this.#store = store;
    this.#tenancy = tenancy;
    this.#pool = new PortPool(publicRange(ctx.options), ctx.clock, (port, _key, why) => this.#reservationEnded(port, why));
    this.#names = new NameDoors(
      ctx,
      store,
      (host, why) => this.#reservationEnded(host, why),
      (host) => this.#maxClientsPerIpOf(this.#names.pool.tenantOf(host)),
      (host) => this.#tenantAccessOf(this.#names.pool.tenantOf(host)),
    );
  }

  get range(): { first: number; last: number } {
    return this.#pool.range;
  }

  get pool(): PortPool {
    return this.#pool;
  }

  /** What a tenant's quota counts: its reservations of ports and of names. */
  get reservations(): TenantReservations {
    return {
      reservationsOf: (tenant) => this.#pool.reservationsOf(tenant) + this.#names.pool.reservationsOf(tenant),
      evictOldest: (key, tenant) => this.#pool.evictOldest(key, tenant) || this.#names.pool.evictOldest(key, tenant),
    };
  }

  doorOf(place: Place): PublicDoor | undefined {
    return isName(place) ? this.#names.doorOf(place) : this.#doors.get(place);
  }

  /** Whether the key has a reservation here (a port or a name). */
  reserves(key: string): boolean {
    return this.#pool.reservedPortOf(key) !== undefined || this.#names.pool.reservedNameOf(key) !== undefined;
  }

  /** A port for `key`: its own (reserved) one, else `wanted`, else the lowest free; its door is open. */
  claim(wanted: number | undefined, key: string, scope: ClaimScope | undefined): Promise<PortClaim> {
    this.#dropOtherName(key, undefined);
    return claimPort(this.#pool, this.#store, (candidate) => this.#openDoor(candidate), wanted, key, scope);
  }

  /** A host on the names ports for `key`, door open; the key gives up any other place it had here (one key, one address). */
  claimName(host: string, key: string, tenant: string | undefined): Promise<NameTake> {
    const port = this.#pool.reservedPortOf(key);
    if (port !== undefined) this.#free(port, 'its service came back for a name instead');
    this.#dropOtherName(key, host);
    return this.#names.take(host, key, tenant);
  }

  /** The key that holds a host on the names ports (live, being claimed, or reserved), if any. */
  nameHolder(host: string): string | undefined {
    return this.#names.pool.holderOf(host);
  }

  /** The door of a client's host on the names ports: exact, else the longest wildcard. */
  doorOfHost(host: string): PublicDoor | undefined {
    return this.#names.route(host);
  }

  /** The reservations of a tenant end: all of them (it was removed), or those of names `keep` no longer allows. */
  revokeTenant(tenant: string, keep?: (host: string) => boolean): void {
    if (keep === undefined) this.#pool.revokeTenant(tenant);
    this.#names.pool.revokeTenant(tenant, keep);
  }

  /**
   * A claimed place not used after all: `revoked`, the key lost its right (freed, door closed);
   * `gone`, its service went before OK (reserved); `stopping`, reserved, but its door closes.
   */
  abandon(port: Place, key: string, why: 'revoked' | 'gone' | 'stopping'): void {
    this.#release(port, key, why === 'revoked' ? 0 : this.#ctx.options.resumeGraceMs);
    if (why === 'revoked') this.#closeDoor(port, 'its tenant was revoked during the registration');
    if (why === 'stopping') this.#closeDoor(port, 'the relay is stopping');
    void this.persist();
  }

  /** The key's reservation ends for a newcomer of its tenant at another worker. */
  evict(place: Place, key: string): void {
    return isName(place) ? this.#names.pool.evict(place, key) : this.#pool.evict(place, key);
  }

  /** The key's service left for good: the port is free and its door closes. */
  left(port: Place): void {
    this.#free(port, 'its service left for good');
  }

  /** The key registered at another worker, which serves the place now: its held clients go there through `handOver`. */
  movedAway(place: Place, handOver: (client: Socket) => void): void {
    const door = this.doorOf(place);
    this.#away.delete(place);
    if (isName(place)) this.#names.forget(place);
    else this.#pool.forget(place);
    if (!isName(place) && this.#doors.delete(place)) this.#closedHere.add(place);
    for (const client of door?.stopAccepting() ?? []) handOver(client);
    void this.persist();
  }

  /** The key's service went away: its place stays reserved for the grace (none: closed as if it left). */
  away(port: Place, key: string, service: WatchedService): void {
    if (this.#ctx.options.resumeGraceMs === 0) return this.#free(port, 'its service went away and --resume-grace is 0');
    this.#away.set(port, service);
    this.#release(port, key, this.#ctx.options.resumeGraceMs);
    void this.persist();
  }

  /** A service registered on the port: it is no longer shown as away. */
  back(port: Place): void {
    this.#away.delete(port);
  }

  /** The services away now, whose ports are kept for them. */
  awayServices(): Iterable<WatchedService> {
    return this.#away.values();
  }

  /** The leases the store kept (the state file's, or the fleet's for this node). */
  loadLeases(): Promise<LeaseRecord[]> {
    return this.#store.load();
  }

  /** Makes the leases durable; resolves once they are (or the write failed and was reported). */
  persist(): Promise<void> {
    return this.#store.save(() => this.snapshot());
  }

  /** Every lease, live ones with `until: null`: what a successor or the state file needs. */
  snapshot(): LeaseRecord[] {
    return [...this.#pool.snapshot(), ...this.#names.snapshot()];
  }

  pauseWrites(): Promise<void> {
    return this.#store.pause();
  }

  resumeWrites(): void {
    this.#store.resume(() => this.snapshot());
  }

  /**
   * Takes over leases made elsewhere (the state file, a previous worker): reserved, doors
   * open at once; a port another program holds now keeps its reservation only.
   */
  async install(records: LeaseRecord[]): Promise<void> {
    const now = this.#ctx.clock.now();
    for (const record of records) {
      const until = record.until ?? now + this.#ctx.options.resumeGraceMs;
      // A lease of a tenant no longer in the file is not kept for anyone.
      const gone = record.tenant !== undefined && this.#tenancy?.has(record.tenant) === false;
      if (until <= now || gone) continue;
      if (record.name !== undefined) {
        // A name with no names port to serve it now is not kept.
        if (this.#ctx.options.namesPorts !== undefined) this.#names.install(record, until);
        continue;
      }
      if (this.#doors.has(record.port) || !this.#pool.reserve(record.port, record.key, until, record.tenant)) continue;
      // Not looked at first: a predecessor may be listening on it through the master's socket.
      const listening = await listenPublic(this.#ctx, record.port, false);
      if (!listening.ok) {
        if (listening.why === 'fds') this.#ctx.refusals.count('fds', { publicPort: record.port }, 'out of file descriptors: a leased public port could not be opened');
        else this.#ctx.log.warn({ publicPort: record.port }, 'a leased public port is held by another program; its service will get another port');
        continue;
      }
      // The lease may have ended while we waited for listen().
      if (!this.#pool.isReserved(record.port)) {
        listening.server.close();
        this.#closedHere.add(record.port);
      } else this.#addDoor(record.port, listening.server);
    }
    await this.persist();
  }

  /** A client held by a previous worker for one of our ports or names (a name's with its first bytes put back). */
  adoptHeldClient(port: Place, client: Socket): void {
    const door = this.doorOf(port);
    if (door !== undefined) return door.adopt(client);
    this.#ctx.refusals.count('hold-timeout', placeBindings(port), 'handed-over client reset: its port (or name) has no lease here');
    resetSocket(client);
  }

  /** Every door stops accepting; the clients held at them are returned (for a successor, or to be reset). */
  closeAll(): HeldAtPort[] {
    const held: HeldAtPort[] = [];
    for (const [port, door] of this.#doors) for (const client of door.stopAccepting()) held.push({ port, client });
    this.#doors.clear();
    for (const { host, client } of this.#names.closeAll()) held.push({ port: host, client });
    return held;
  }

  /** A live place back to its pool; with a grace it stays reserved for its key. */
  #release(place: Place, key: string | undefined, graceMs: number): void {
    if (isName(place)) this.#names.pool.release(place, graceMs);
    else this.#pool.release(place, key, graceMs);
  }

  #free(port: Place, reason: string): void {
    this.#release(port, undefined, 0);
    this.#closeDoor(port, reason);
    void this.persist();
  }

  /** Coming back for `host` (or for a port: undefined), the key gives up another name it had reserved. */
  #dropOtherName(key: string, host: string | undefined): void {
    const name = this.#names.pool.reservedNameOf(key);
    if (name !== undefined && name !== host) this.#names.pool.end(name, 'revoked');
  }

  /** A reservation ended before its key came back: its door closes. */
  #reservationEnded(port: Place, why: ReservationEnd): void {
    if (why === 'evicted') {
      this.#ctx.stats.reservationsEvicted++;
      this.#ctx.log.warn(placeBindings(port), 'reservation released early: a new service found no free port');
    }
    this.back(port);
    this.#closeDoor(port, RESERVATION_END[why]);
    void this.persist();
  }

  /** The door of a port the pool says we may have: ours already (reserved for this key), or a new listener. */
  async #openDoor(port: number): Promise<boolean> {
    if (this.#doors.has(port)) return true;
    // A port another worker still listens on for this key: only the master's socket can have it.
    const look = !this.#closedHere.delete(port) && this.#store.heldBySibling?.(port) !== true;
    const listening = await listenPublic(this.#ctx, port, look);
    if (!listening.ok && listening.why === 'fds') throw new OutOfFdsError();
    if (!listening.ok) return false;
    this.#addDoor(port, listening.server);
    return true;
  }

  #addDoor(port: number, server: Server): void {
    const tenant = (): string | undefined => this.#pool.tenantOf(port);
    const limits = { maxClientsPerIp: () => this.#maxClientsPerIpOf(tenant()), access: () => this.#tenantAccessOf(tenant()) };
    this.#doors.set(port, new PublicDoor(this.#ctx, port, server, limits.maxClientsPerIp, limits.access));
  }

  /** A tenant's allow/deny lists apply on its ports (and names), within the relay's. */
  #tenantAccessOf(tenant: string | undefined): AccessList | undefined {
    return tenant === undefined ? undefined : this.#tenancy?.specOf(tenant)?.access;
  }

  /** A tenant's maxClientsPerIp replaces the relay-wide one on its ports (and names). */
  #maxClientsPerIpOf(tenant: string | undefined): number | undefined {
    return tenant === undefined ? undefined : this.#tenancy?.limitsOf(tenant)?.maxClientsPerIp;
  }

  #closeDoor(port: Place, reason: string): void {
    if (isName(port)) return this.#names.closeDoor(port, reason);
    this.#doors.get(port)?.close(reason);
    if (this.#doors.delete(port)) this.#closedHere.add(port);
  }
}
