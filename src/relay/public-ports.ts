import type { Server, Socket } from 'node:net';
import type { Tenancy } from '../access/tenancy.js';
import { publicRange } from '../config/defaults.js';
import { claimPort, type PortClaim } from '../leases/claim-port.js';
import type { WatchedService } from '../monitor/overview.js';
import type { LeaseRecord, LeaseStore } from '../leases/lease-store.js';
import { PortPool, type ClaimScope, type ReservationEnd } from '../leases/port-pool.js';
import { OutOfFdsError } from '../errors.js';
import { resetSocket } from '../net/splice.js';
import { hostCandidates } from '../protocol/names.js';
import type { AccessList } from '../protocol/cidr.js';
import type { RelayContext } from './context.js';
import { listenPublic } from './listeners.js';
import { PublicDoor } from './public-door.js';

/** A public client held at the door of `port`, on its way to a successor or to be reset. */
export interface HeldAtPort {
  port: number;
  client: Socket;
}

const RESERVATION_END: Record<ReservationEnd, string> = {
  evicted: 'reservation released early for a new service',
  expired: 'service not back within its grace',
  revoked: 'its tenant was removed, or no longer has this port',
};

/**
 * The relay's public ports: which key owns which port (the pool and its lease store)
 * and the door that listens on each. A port's door opens when a key first gets it and
 * closes only when the key loses it (it left for good, or its grace ended), so a
 * departed service's port keeps listening, and holding its clients, until it is back.
 */
export class PublicPorts {
  readonly #ctx: RelayContext;
  readonly #store: LeaseStore;
  readonly #tenancy: Tenancy | undefined;
  readonly #pool: PortPool;
  readonly #doors = new Map<number, PublicDoor>();
  /** Ports whose door closed here, not listened on since: the master may still hold its socket, so the next listen asks it. */
  readonly #closedHere = new Set<number>();
  /** The doors of names (their ports are slots, not listened on), by registered host, and each slot's host. */
  readonly #named = new Map<string, PublicDoor>();
  readonly #hostOf = new Map<number, string>();
  /** The service of each door whose service is away (within its grace), by port: the dashboard still lists it. */
  readonly #away = new Map<number, WatchedService>();

  constructor(ctx: RelayContext, store: LeaseStore, tenancy: Tenancy | undefined) {
    this.#ctx = ctx;
    this.#store = store;
    this.#tenancy = tenancy;
    this.#pool = new PortPool(publicRange(ctx.options), ctx.clock, (port, _key, why) => this.#reservationEnded(port, why));
  }

  get range(): { first: number; last: number } {
    return this.#pool.range;
  }

  get pool(): PortPool {
    return this.#pool;
  }

  doorOf(port: number): PublicDoor | undefined {
    return this.#doors.get(port);
  }

  /** A port for `key` (its own, else `wanted`, else the lowest free), door open; with `name`, only the name's slot (not listened on). */
  claim(wanted: number | undefined, key: string, scope: ClaimScope | undefined, name?: string): Promise<PortClaim> {
    const own = this.#pool.reservedPortOf(key);
    // Back for another kind of address (a name for a port, or the reverse): the old one is not kept.
    if (own !== undefined && (this.#pool.nameOf(own) === undefined) !== (name === undefined)) this.#free(own, 'its service came back for another kind of address');
    return claimPort(this.#pool, this.#store, (candidate) => this.#openDoor(candidate, name), name === undefined ? wanted : undefined, key, scope, name);
  }

  /** The key that holds a name on the names ports (live, being claimed, or reserved), if any. */
  nameHolder(host: string): string | undefined {
    return this.#pool.nameHolder(host);
  }

  /** The door of a name's exact host, else of the longest wildcard that matches it. */
  doorOfHost(host: string): PublicDoor | undefined {
    for (const candidate of hostCandidates(host)) {
      const door = this.#named.get(candidate);
      if (door !== undefined) return door;
    }
    return undefined;
  }

  /**
   * A claimed port not used after all: `revoked`, the key lost its right (freed, door closed);
   * `gone`, its service went before OK (reserved); `stopping`, reserved, but its door closes.
   */
  abandon(port: number, key: string, why: 'revoked' | 'gone' | 'stopping'): void {
    if (why === 'revoked') {
      this.#pool.release(port);
      this.#closeDoor(port, 'its tenant was revoked during the registration');
    } else {
      this.#pool.release(port, key, this.#ctx.options.resumeGraceMs);
      if (why === 'stopping') this.#closeDoor(port, 'the relay is stopping');
    }
    void this.persist();
  }

  /** The key's service left for good: the port is free and its door closes. */
  left(port: number): void {
    this.#free(port, 'its service left for good');
  }

  /** The key registered at another worker, which listens on the port now: its held clients go there through `handOver`. */
  movedAway(port: number, handOver: (client: Socket) => void): void {
    this.#pool.forget(port);
    this.#away.delete(port);
    const door = this.#doors.get(port);
    if (door !== undefined) {
      this.#doors.delete(port);
      this.#closedHere.add(port);
      for (const client of door.stopAccepting()) handOver(client);
    }
    void this.persist();
  }

  /** The key's service went away: its port stays reserved for the grace (none: closed as if it left). */
  away(port: number, key: string, service: WatchedService): void {
    if (this.#ctx.options.resumeGraceMs === 0) return this.#free(port, 'its service went away and --resume-grace is 0');
    this.#away.set(port, service);
    this.#pool.release(port, key, this.#ctx.options.resumeGraceMs);
    void this.persist();
  }

  /** A service registered on the port: it is no longer shown as away. */
  back(port: number): void {
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
    return this.#store.save(() => this.#pool.snapshot());
  }

  /** Every lease, live ones with `until: null`: what a successor or the state file needs. */
  snapshot(): LeaseRecord[] {
    return this.#pool.snapshot();
  }

  pauseWrites(): Promise<void> {
    return this.#store.pause();
  }

  resumeWrites(): void {
    this.#store.resume(() => this.#pool.snapshot());
  }

  /**
   * Takes over leases made elsewhere (the state file, a previous worker): each port is
   * reserved for its key and its door opens at once, holding clients until the service
   * registers again. A port another program holds now keeps its reservation only.
   */
  async install(records: LeaseRecord[]): Promise<void> {
    const now = this.#ctx.clock.now();
    for (const record of records) {
      const until = record.until ?? now + this.#ctx.options.resumeGraceMs;
      // A lease of a tenant no longer in the file is not kept for anyone.
      const gone = record.tenant !== undefined && this.#tenancy?.has(record.tenant) === false;
      // A name with no names port to serve it now, or one listed twice, is not kept.
      const unnamed = record.name !== undefined && (this.#ctx.options.namesPorts === undefined || this.#named.has(record.name));
      if (until <= now || gone || unnamed || this.#doors.has(record.port) || !this.#pool.reserve(record.port, record.key, until, record.tenant, record.name)) continue;
      if (record.name !== undefined) {
        this.#addDoor(record.port, undefined, record.name);
        continue;
      }
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

  /** A client held by a previous worker for one of our ports. */
  adoptHeldClient(port: number, client: Socket): void {
    const door = this.#doors.get(port);
    if (door === undefined) {
      this.#ctx.refusals.count('hold-timeout', { publicPort: port }, 'handed-over client reset: its port has no lease here');
      resetSocket(client);
      return;
    }
    if (door.owner !== undefined) door.owner.takeClient(client);
    else door.hold(client);
  }

  /** Every door stops accepting; the clients held at them are returned (for a successor, or to be reset). */
  closeAll(): HeldAtPort[] {
    const held: HeldAtPort[] = [];
    for (const [port, door] of this.#doors) {
      // A name's held clients had their first bytes read here, which a successor could not send on: reset.
      for (const client of door.stopAccepting()) {
        if (this.#hostOf.has(port)) resetSocket(client);
        else held.push({ port, client });
      }
    }
    this.#doors.clear();
    this.#named.clear();
    this.#hostOf.clear();
    return held;
  }

  #free(port: number, reason: string): void {
    this.#pool.release(port);
    this.#closeDoor(port, reason);
    void this.persist();
  }

  /** A reservation ended before its key came back: its door closes. */
  #reservationEnded(port: number, why: ReservationEnd): void {
    if (why === 'evicted') {
      this.#ctx.stats.reservationsEvicted++;
      this.#ctx.log.warn({ publicPort: port }, 'reservation released early: a new service found no free port');
    }
    this.back(port);
    this.#closeDoor(port, RESERVATION_END[why]);
    void this.persist();
  }

  /** The door of a port the pool says we may have: ours already (reserved for this key), or a new listener. */
  async #openDoor(port: number, name: string | undefined): Promise<boolean> {
    const door = this.#doors.get(port);
    if (door !== undefined && name !== undefined) this.#nameDoor(port, door, name);
    if (door !== undefined || name !== undefined) {
      if (door === undefined) this.#addDoor(port, undefined, name);
      return true;
    }
    // A port another worker still listens on for this key: only the master's socket can have it.
    const look = !this.#closedHere.delete(port) && this.#store.heldBySibling?.(port) !== true;
    const listening = await listenPublic(this.#ctx, port, look);
    if (!listening.ok && listening.why === 'fds') throw new OutOfFdsError();
    if (!listening.ok) return false;
    this.#addDoor(port, listening.server);
    return true;
  }

  #addDoor(port: number, server: Server | undefined, name?: string): void {
    const door = new PublicDoor(
      this.#ctx,
      port,
      server,
      () => this.#maxClientsPerIpOf(port),
      () => this.#tenantAccessOf(port),
    );
    this.#doors.set(port, door);
    if (name !== undefined) this.#nameDoor(port, door, name);
  }

  #tenantAccessOf(port: number): AccessList | undefined {
    const tenant = this.#tenancy === undefined ? undefined : this.#pool.tenantOf(port);
    return tenant === undefined ? undefined : this.#tenancy?.specOf(tenant)?.access;
  }

  /** The slot's door now answers for `host` (a key back with another name gives up its old one). */
  #nameDoor(port: number, door: PublicDoor, host: string): void {
    const old = this.#hostOf.get(port);
    if (old !== undefined) this.#named.delete(old);
    this.#named.set(host, door);
    this.#hostOf.set(port, host);
  }

  /** A tenant's maxClientsPerIp replaces the relay-wide one on its ports. */
  #maxClientsPerIpOf(port: number): number | undefined {
    const tenant = this.#tenancy === undefined ? undefined : this.#pool.tenantOf(port);
    return tenant === undefined ? undefined : this.#tenancy?.limitsOf(tenant)?.maxClientsPerIp;
  }

  #closeDoor(port: number, reason: string): void {
    const host = this.#hostOf.get(port);
    if (host !== undefined) this.#named.delete(host);
    this.#hostOf.delete(port);
    this.#doors.get(port)?.close(reason);
    if (this.#doors.delete(port)) this.#closedHere.add(port);
  }
}
