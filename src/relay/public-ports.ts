import type { Server, Socket } from 'node:net';
import type { Tenancy } from '../access/tenancy.js';
import { publicRange } from '../config/defaults.js';
import { claimPort, type PortClaim } from '../leases/claim-port.js';
import type { WatchedService } from '../monitor/overview.js';
import type { LeaseRecord, LeaseStore } from '../leases/lease-store.js';
import { PortPool, type ClaimScope, type ReservationEnd } from '../leases/port-pool.js';
import { OutOfFdsError } from '../errors.js';
import { resetSocket } from '../net/splice.js';
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
  /**
   * Ports whose door closed here, not listened on since. The master closes its socket for
   * one only once it reads the close, so a look before the next listen could find our
   * own socket: that listen goes to the master, which reads the close first.
   */
  readonly #closedHere = new Set<number>();
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

  /** A port for `key`: its own (reserved) one, else `wanted`, else the lowest free; its door is open. */
  claim(wanted: number | undefined, key: string, scope: ClaimScope | undefined): Promise<PortClaim> {
    return claimPort(this.#pool, this.#store, (candidate) => this.#openDoor(candidate), wanted, key, scope);
  }

  /**
   * A claimed port that will not be used after all (the registration failed late):
   * `revoked`, the key lost its right to it (freed, door closed); `gone`, its service
   * went away before OK (reserved for the key, as any departure); `stopping`, the relay
   * is stopping (reserved, but its door closes: nothing would take its clients, and
   * doors opened after the stop began are not handed to a successor).
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

  /**
   * The key's service went away: its port stays reserved for the grace, shown as away.
   * With no grace (--resume-grace 0) nothing is kept: the door closes as if it had left.
   */
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
      if (until <= now || gone || this.#doors.has(record.port) || !this.#pool.reserve(record.port, record.key, until, record.tenant)) continue;
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
    for (const [port, door] of this.#doors) for (const client of door.stopAccepting()) held.push({ port, client });
    this.#doors.clear();
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
  async #openDoor(port: number): Promise<boolean> {
    if (this.#doors.has(port)) return true;
    const listening = await listenPublic(this.#ctx, port, !this.#closedHere.delete(port));
    if (!listening.ok && listening.why === 'fds') throw new OutOfFdsError();
    if (!listening.ok) return false;
    this.#addDoor(port, listening.server);
    return true;
  }

  #addDoor(port: number, server: Server): void {
    this.#doors.set(
      port,
      new PublicDoor(
        this.#ctx,
        port,
        server,
        () => this.#maxClientsPerIpOf(port),
        () => this.#tenantAccessOf(port),
      ),
    );
  }

  #tenantAccessOf(port: number): AccessList | undefined {
    const tenant = this.#tenancy === undefined ? undefined : this.#pool.tenantOf(port);
    return tenant === undefined ? undefined : this.#tenancy?.specOf(tenant)?.access;
  }

  /** A tenant's maxClientsPerIp replaces the relay-wide one on its ports. */
  #maxClientsPerIpOf(port: number): number | undefined {
    const tenant = this.#tenancy === undefined ? undefined : this.#pool.tenantOf(port);
    return tenant === undefined ? undefined : this.#tenancy?.limitsOf(tenant)?.maxClientsPerIp;
  }

  #closeDoor(port: number, reason: string): void {
    this.#doors.get(port)?.close(reason);
    if (this.#doors.delete(port)) this.#closedHere.add(port);
  }
}
