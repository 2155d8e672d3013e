import type { Server, Socket } from 'node:net';
import type { Timer } from '../clock.js';
import type { Place } from '../leases/lease-store.js';
import type { Logger } from '../log.js';
import type { ServiceMessage } from '../protocol/messages.js';
import { ignoreSocketError } from '../net/ignore-error.js';
import { peerHasReset } from '../net/peer-reset.js';
import { resetSocket } from '../net/splice.js';
import type { AccessList } from '../protocol/cidr.js';
import { boundAddressOf, clientAddressOf, type BoundAddress } from './client-address.js';
import type { RelayContext } from './context.js';

/** What a door hands its clients to: the registration that owns the port now. */
export interface DoorOwner {
  readonly log: Logger;
  /** Its own allow/deny lists (sent at registration), within its tenant's and the relay's. */
  readonly access?: AccessList | undefined;
  /** Takes a public client, fresh or one that waited at the door. */
  takeClient(client: Socket): void;
}

/**
 * Where a session's clients come from and go back to: its port's door, or the pool of
 * services sharing the port (which holds the door in its turn).
 */
export interface SessionDoor<Owner extends DoorOwner = DoorOwner> {
  /** A pool: a client one member cannot serve may go to another. */
  readonly pooled: boolean;
  readonly heldCount: number;
  /** Where its clients arrive, when that is one address (see clientLine). */
  readonly bound: BoundAddress | undefined;
  open(owner: Owner): void;
  vacate(owner: Owner): void;
  offerHeld(): void;
  /** A client the owner took and cannot serve after all (it went away, or did not dial back): held, or offered elsewhere. */
  giveBack(client: Socket, from: Owner): void;
  /** A pool member's DRAIN, HEALTH or DECLINE; false when the line is none of those, or there is no pool. */
  memberSaid(from: Owner, msg: ServiceMessage): boolean;
}

/** What a log line names a door by: its public port, or its host on the names ports. */
export function placeBindings(place: Place): { publicPort: number } | { name: string } {
  return typeof place === 'number' ? { publicPort: place } : { name: place };
}

interface HeldClient {
  client: Socket;
  timer: Timer;
}

/**
 * One public port, listening for as long as some key owns it: while its service is
 * registered, clients go straight to the registration; while the service is away
 * (within its grace) they are held, unread, so the bytes they send wait in the kernel
 * and reach the service first and in order once it is back. A client held longer
 * than the hold timeout, or still held when the door closes, is reset: a reset, not a
 * FIN, since nothing was served.
 */
export class PublicDoor implements SessionDoor {
  readonly pooled = false;
  /** Its public port, or for a name's door the host. */
  readonly place: Place;
  /** Undefined for a name's door: its clients come from the names ports (names-ports.ts). */
  readonly #server: Server | undefined;
  readonly #ctx: RelayContext;
  readonly #log: Logger;
  /** A tenant's own limit on its ports, where it has one; else the relay-wide one applies. */
  readonly #maxClientsPerIp: () => number | undefined;
  /** Its tenant's allow/deny lists, as last loaded, where it has them. */
  readonly #tenantAccess: () => AccessList | undefined;
  /** Where clients reach this door, when it listens on one address (see clientLine); null until first asked. */
  #bound: BoundAddress | undefined | null = null;
  #owner: DoorOwner | undefined;
  readonly #held: HeldClient[] = [];
  #closed = false;

  constructor(ctx: RelayContext, place: Place, server: Server | undefined, maxClientsPerIp: () => number | undefined, tenantAccess: () => AccessList | undefined = () => undefined) {
    this.place = place;
    this.#server = server;
    this.#ctx = ctx;
    this.#log = ctx.log.child(placeBindings(place));
    this.#maxClientsPerIp = maxClientsPerIp;
    this.#tenantAccess = tenantAccess;
    if (typeof place === 'number') server?.on('connection', (client: Socket) => this.#onClient(client, place));
  }

  /** The tenant's maxClientsPerIp for this door's clients, if its key's tenant has one. */
  get maxClientsPerIp(): number | undefined {
    return this.#maxClientsPerIp();
  }

  get heldCount(): number {
    return this.#held.length;
  }

  get bound(): BoundAddress | undefined {
    // A name's door listens on nothing: its clients reached a names port, which they tell themselves.
    if (this.#bound === null) this.#bound = this.#server === undefined ? undefined : boundAddressOf(this.#server);
    return this.#bound;
  }

  get owner(): DoorOwner | undefined {
    return this.#owner;
  }

  /** A registration takes the port: every held client goes to it, oldest first. */
  open(owner: DoorOwner): void {
    this.#owner = owner;
    this.offerHeld();
  }

  /** The registration is gone; new clients wait at the door from now on. */
  vacate(owner: DoorOwner): void {
    if (this.#owner === owner) this.#owner = undefined;
  }

  /** Hands held clients to the owner, if there is one. */
  offerHeld(): void {
    const owner = this.#owner;
    if (owner === undefined) return;
    // A held client that reset meanwhile is not announced: its service would dial back for nothing.
    for (const client of this.#release()) {
      if (peerHasReset(client)) resetSocket(client);
      else owner.takeClient(client);
    }
  }

  giveBack(client: Socket): void {
    this.hold(client);
  }

  memberSaid(): boolean {
    return false;
  }

  /**
   * Keeps a client waiting for the service: one that arrives while the service is
   * away, or one whose registration ended (or went silent) before its dial-back.
   * `since`: when the hold timeout started counting (a pool's client: at its arrival).
   */
  hold(client: Socket, since = this.#ctx.clock.now()): void {
    const { maxPendingPerService, holdTimeoutMs, maxTunnels } = this.#ctx.options;
    if (this.#closed || this.#held.length >= maxPendingPerService) {
      const why = this.#closed ? 'the port is closing' : `over ${maxPendingPerService} clients waiting`;
      return this.#refuse(client, 'pending', why);
    }
    // Held clients count against --max-tunnels with the taken ones: every public client
    // the relay keeps open, at any door. A held client costs one descriptor where the cap
    // budgets two (a tunnel's), and the derived cap already leaves its own share of the
    // open-file limit (config/limits.ts) to listeners, control and data connections, so
    // no stranger at a departed service's door can take those (an explicit --max-tunnels
    // is the operator's own budget, on the same terms). A client coming back to
    // the door from a session was counted as taken until now, so it always has room.
    if (this.#ctx.stats.publicClients >= maxTunnels) return this.#refuse(client, 'tunnels', `over ${maxTunnels} public clients in all`);
    const held: HeldClient = {
      client,
      timer: this.#ctx.clock.setTimeout(
        () => {
          const index = this.#held.indexOf(held);
          if (index >= 0) this.#held.splice(index, 1);
          this.#ctx.stats.clientsHeld--;
          this.#holdEnded(client, `service not back within ${holdTimeoutMs} ms`);
        },
        Math.max(1, since + holdTimeoutMs - this.#ctx.clock.now()),
      ),
    };
    this.#held.push(held);
    this.#ctx.stats.clientsHeld++;
  }

  /** Stops accepting and gives up the clients held so far (a worker hands them to its successor). */
  stopAccepting(): Socket[] {
    this.#server?.close();
    return this.#release();
  }

  /** Every held client, oldest first, no longer held. */
  #release(): Socket[] {
    const released = this.#held.splice(0);
    this.#ctx.stats.clientsHeld -= released.length;
    return released.map(({ client, timer }) => {
      this.#ctx.clock.clearTimeout(timer);
      return client;
    });
  }

  /** The lease is over: stop listening and reset whoever is still held. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#owner = undefined;
    for (const client of this.stopAccepting()) this.#holdEnded(client, reason);
  }

  #refuse(client: Socket, reason: 'pending' | 'tunnels', why: string): void {
    this.#ctx.refusals.count(reason, { client: clientAddressOf(client)?.address }, `public client refused: ${why}`, this.#log);
    resetSocket(client);
  }

  #holdEnded(client: Socket, reason: string): void {
    this.#ctx.refusals.count('hold-timeout', { client: clientAddressOf(client)?.address }, `held client reset: ${reason}`, this.#log);
    resetSocket(client);
  }

  #onClient(client: Socket, port: number): void {
    client.on('error', ignoreSocketError);
    const { admission } = this.#ctx;
    if (!admission.viaBalancer(client)) return this.#admit(client, port);
    void admission.fromBalancer(client, port).then((ok) => ok && this.#admit(client, port));
  }

  /** Admission's steps after the PROXY header: the lists, then the per-address limits. */
  #admit(client: Socket, port: number): void {
    if (!this.permits(client)) return;
    if (this.#ctx.admission.admit(client, port, this.#maxClientsPerIp())) this.arrive(client);
  }

  /** The lists of the relay, of the port's tenant and of its service let the client in (else it was reset and counted). */
  permits(client: Socket): boolean {
    // A name's door counts a refusal at the names port the client reached.
    const port = typeof this.place === 'number' ? this.place : (client.localPort ?? 0);
    return this.#ctx.admission.permits(client, port, [this.#tenantAccess(), this.#owner?.access]);
  }

  /**
   * A client another worker accepted (this one's predecessor on an upgrade, or a names port's
   * worker without this name): admitted here as if it had arrived here, a name's
   * client against its tenant's maxClientsPerIp too, which only this worker knows.
   */
  adopt(client: Socket): void {
    const named = typeof this.place === 'string';
    // A name's client met the relay-wide limit at a names port, its tenant's only once named.
    this.#ctx.admission.adopt(client, named ? undefined : this.#maxClientsPerIp());
    if (named && !this.#ctx.admission.admitNamed(client, client.localPort ?? 0, this.#maxClientsPerIp())) return;
    if (this.permits(client)) this.arrive(client);
  }

  /** An admitted client: to the owner, or held until there is one. */
  arrive(client: Socket): void {
    if (this.#owner !== undefined) this.#owner.takeClient(client);
    else this.hold(client);
  }
}
