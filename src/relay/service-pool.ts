import type { Socket } from 'node:net';
import type { Place } from '../leases/lease-store.js';
import type { Logger } from '../log.js';
import type { MemberState, ServiceFigures, WatchedMember, WatchedService } from '../monitor/overview.js';
import { NOT_PROBED, type ProbeStatus } from '../monitor/probe-status.js';
import type { PoolFigures } from '../monitor/stats.js';
import type { ServiceMessage } from '../protocol/messages.js';
import { releaseCount } from './client-count.js';
import type { BoundAddress } from './client-address.js';
import type { RelayContext } from './context.js';
import { placeBindings, type DoorOwner, type PublicDoor, type SessionDoor } from './public-door.js';
import type { ServiceSession } from './service-session.js';

/** What the pool knows of a member besides its session: what the member said of itself. */
interface Member {
  readonly session: ServiceSession;
  /** DRAIN: no new clients, for good. */
  draining: boolean;
  /** HEALTH down: no new clients until HEALTH up. */
  targetDown: boolean;
  /** When it was last picked, in picks of this pool: the tie-break after load and latency. */
  lastPicked: number;
}

/** A public client on its way to a member: when it arrived, and the members that failed it since. */
interface Offer {
  readonly arrivedAt: number;
  readonly tried: Set<ServiceSession>;
}

/** Dial-back times closer than this are a tie: on one network they differ by noise, and a tie goes round. */
const LATENCY_SLACK_SECONDS = 0.005;

/** Fewer clients first, then the clearly quicker dial-back, then the one picked longest ago. */
function better(a: Member, b: Member): boolean {
  const { session: x } = a;
  const { session: y } = b;
  if (x.taken !== y.taken) return x.taken < y.taken;
  const quicker = y.recentDialbackSeconds - x.recentDialbackSeconds;
  if (Math.abs(quicker) > LATENCY_SLACK_SECONDS) return quicker > 0;
  return a.lastPicked < b.lastPicked;
}

/**
 * The services registered with one pool key (docs/protocol.md §17): they share one
 * public port, whose door hands every client to the pool, and the pool to the ready
 * member with the least load. A client a member fails before its first byte (no
 * dial-back in time, DECLINE, its control connection gone) has not been read, so it is
 * offered to the next ready member; when none is left it waits at the door, its hold
 * timeout counted from its arrival.
 */
export class ServicePool implements DoorOwner, SessionDoor<ServiceSession>, WatchedService {
  readonly pooled = true;
  /** The id of its first member: the pool's place among the services listed. */
  readonly id: string;
  readonly key: string;
  /** The key's public port, or its host on the names ports: every member's. */
  readonly place: Place;
  /** The port its clients reach: its own, or the first names port. */
  readonly port: number;
  readonly figures: ServiceFigures;
  readonly log: Logger;
  readonly #ctx: RelayContext;
  readonly #door: PublicDoor;
  readonly #members = new Map<ServiceSession, Member>();
  readonly #offers = new WeakMap<Socket, Offer>();
  #picks = 0;

  constructor(ctx: RelayContext, identity: { id: string; key: string; place: Place; port: number; figures: ServiceFigures }, door: PublicDoor) {
    this.id = identity.id;
    this.key = identity.key;
    this.place = identity.place;
    this.port = identity.port;
    this.figures = identity.figures;
    this.#ctx = ctx;
    this.#door = door;
    this.log = ctx.log.child({ pool: identity.id, ...placeBindings(identity.place) });
  }

  /** Members registered now. */
  get size(): number {
    return this.#members.size;
  }

  get heldCount(): number {
    return this.#door.heldCount;
  }

  get bound(): BoundAddress | undefined {
    return this.#door.bound;
  }

  get waiting(): number {
    let waiting = 0;
    for (const session of this.#members.keys()) waiting += session.waiting;
    return waiting;
  }

  /** The pool's probe: ok while any member's is, failing when every probed member's is. */
  get probe(): ProbeStatus {
    const states = [...this.#members.keys()].map((session) => session.probe);
    return states.find((probe) => probe.state === 'ok') ?? states.find((probe) => probe.state === 'failing') ?? states.find((probe) => probe.state === 'pending') ?? NOT_PROBED;
  }

  members(): WatchedMember[] {
    return [...this.#members.values()].map((member) => {
      const { session } = member;
      return { id: session.id, peer: session.member ?? '-', state: this.#stateOf(member), tunnelsOpen: session.taken - session.waiting, waiting: session.waiting, probe: session.probe };
    });
  }

  figuresByState(): PoolFigures {
    const figures = { port: this.port, ready: 0, unhealthy: 0, draining: 0 };
    for (const member of this.#members.values()) figures[this.#stateOf(member)]++;
    return figures;
  }

  open(session: ServiceSession): void {
    this.#members.set(session, { session, draining: false, targetDown: false, lastPicked: 0 });
    session.log.info({ members: this.#members.size }, 'pool member joined');
    if (this.#door.owner === this) this.offerHeld();
    else this.#door.open(this);
  }

  vacate(session: ServiceSession): void {
    if (!this.#members.delete(session)) return;
    if (this.#members.size === 0) this.#door.vacate(this);
  }

  offerHeld(): void {
    this.#door.offerHeld();
  }

  /** A client from the door: fresh, or held there until now. */
  takeClient(client: Socket): void {
    let offer = this.#offers.get(client);
    if (offer === undefined) this.#offers.set(client, (offer = { arrivedAt: this.#ctx.clock.now(), tried: new Set() }));
    this.#dispatch(client, offer, undefined);
  }

  giveBack(client: Socket, from: ServiceSession): void {
    let offer = this.#offers.get(client);
    if (offer === undefined) this.#offers.set(client, (offer = { arrivedAt: this.#ctx.clock.now(), tried: new Set() }));
    offer.tried.add(from);
    this.#dispatch(client, offer, from);
  }

  memberSaid(from: ServiceSession, msg: ServiceMessage): boolean {
    const member = this.#members.get(from);
    if (member === undefined) return false;
    if (msg.kind === 'DRAIN') {
      if (!member.draining) from.log.info({ tunnels: from.taken - from.waiting }, 'pool member draining: no new clients for it');
      member.draining = true;
      return true;
    }
    if (msg.kind === 'HEALTH') {
      const down = msg.state === 'down';
      if (down !== member.targetDown) from.log[down ? 'warn' : 'info']({}, down ? 'pool member says its target is down: no new clients for it' : 'pool member says its target is back');
      member.targetDown = down;
      if (!down) this.offerHeld();
      return true;
    }
    if (msg.kind === 'DECLINE') {
      const entry = this.#ctx.tokens.takeClientOf(from, msg.token);
      if (entry === undefined) {
        from.log.debug({ token: `${msg.token.slice(0, 8)}…` }, 'DECLINE of a token this member is not waiting for: ignored');
        return true;
      }
      releaseCount(entry.client);
      this.giveBack(entry.client, from);
      return true;
    }
    return false;
  }

  #dispatch(client: Socket, offer: Offer, failedBy: ServiceSession | undefined): void {
    // Stopping or handing over: the door keeps it for the successor, no member is asked now.
    const member = this.#ctx.shuttingDown ? undefined : this.#pick(offer.tried);
    if (member === undefined) {
      // At the door every member may be tried again: one may be ready by the next offer.
      offer.tried.clear();
      return this.#door.hold(client, offer.arrivedAt);
    }
    if (failedBy !== undefined) {
      this.#ctx.stats.poolRetries++;
      member.session.log.info({ from: failedBy.member }, 'public client offered to this member: another failed it before its first byte');
    }
    offer.tried.add(member.session);
    member.lastPicked = ++this.#picks;
    member.session.takeClient(client);
  }

  #pick(tried: ReadonlySet<ServiceSession>): Member | undefined {
    let best: Member | undefined;
    for (const member of this.#members.values()) {
      if (tried.has(member.session) || this.#stateOf(member) !== 'ready' || !member.session.canTake) continue;
      if (best === undefined || better(member, best)) best = member;
    }
    return best;
  }

  #stateOf(member: Member): MemberState {
    if (member.draining) return 'draining';
    return member.targetDown || member.session.probe.state === 'failing' ? 'unhealthy' : 'ready';
  }
}
