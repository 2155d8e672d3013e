import { lookup } from 'node:dns/promises';
import type { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import type { Logger } from '../log.js';
import { joinHostPort, plainAddress, splitHostPort } from '../protocol/addresses.js';
import type { CloseOptions, PublicAddress, RelayClientOptions } from './options.js';

/**
 * What the fleet needs of a member: a RelayRegistration, described here by shape so
 * that this file does not import the class that imports it.
 */
interface FleetMember extends EventEmitter {
  readonly publicAddress: PublicAddress | undefined;
  close(options?: CloseOptions): void;
  drain(): Promise<void>;
  setHealth(state: 'up' | 'down'): void;
}

/** Makes one more registration of the same service, with another node of the fleet. */
type MemberFactory = (options: RelayClientOptions) => FleetMember;

/** Most connections one service keeps to a fleet; nodes= is bounded the same way. */
const MAX_MEMBERS = 16;

/** Every address of a name, in the resolver's order of preference. */
export type Resolve = (host: string) => Promise<string[]>;

const resolveAll: Resolve = async (host) => (await lookup(host, { all: true })).map((entry) => entry.address);

export interface FleetEvents {
  /** A member registered; `othersUp`: another member was registered already. */
  established(address: PublicAddress, othersUp: boolean): void;
  /** A member's node asked for no secret though the service has one. */
  unauthenticated(): void;
  /** The last member stopped for good. */
  failed(err: Error): void;
}

/**
 * Where to register for one name: a name in `nodes=` is one node, so none if one of its
 * addresses has a registration already, else its first address; a name the program was
 * given may stand for several nodes (round-robin DNS), so each address not registered
 * yet. Either way only addresses of the family the resolver prefers: the A and AAAA
 * records of a dual-stack node are one relay, and two registrations with one key on one
 * relay would supersede each other.
 */
export function addressesToRegister(addresses: string[], oneNode: boolean, registered: (address: string) => boolean): string[] {
  const first = addresses[0];
  if (first === undefined) return [];
  if (oneNode) return addresses.some(registered) ? [] : [first];
  const family = isIP(first);
  return addresses.filter((address) => isIP(address) === family && !registered(address));
}

/**
 * A service's registrations with the nodes of a relay fleet: one RelayRegistration per node
 * address, all with the same resume key, so every node gives the same public port and
 * can deliver public clients (a pool member: all with the same pool key, each node's
 * registration one member of the pool there). Addresses come from the host list the program was given
 * and from every node's `OK … nodes=` (see addressesToRegister); the same address is
 * never registered twice. Members report their registrations here; the owner announces
 * the public address when the service becomes reachable or the address changes, not
 * once per node. A member refused for good (`superseded`, say) stops alone: the others
 * carry on, and the owner fails when none is left.
 */
export class FleetMembers {
  readonly #base: RelayClientOptions;
  readonly #make: MemberFactory;
  readonly #log: Logger;
  readonly #events: FleetEvents;
  readonly #resolve: Resolve;
  /** By resolved `ip:port`: the registrations made, and (undefined) the owner's own and those stopped for good. */
  readonly #members = new Map<string, FleetMember | undefined>();
  #closed = false;
  /** A pool member's standing, for the members made from now on too. */
  #draining = false;
  #health: 'up' | 'down' = 'up';

  constructor(base: RelayClientOptions & ({ resumeKey: string } | { poolKey: string }), make: MemberFactory, log: Logger, events: FleetEvents, resolve: Resolve = resolveAll) {
    this.#base = base;
    this.#make = make;
    this.#log = log;
    this.#events = events;
    this.#resolve = resolve;
  }

  /** The address the owner's own connection reached: no member is made for it. */
  markOwn(address: string, port: number): void {
    this.#members.set(joinHostPort(plainAddress(address), port), undefined);
  }

  /**
   * Registers with each node (`host:port`, or a host on the base port) not registered
   * with yet; `listed`: the names come from `nodes=`, one node each.
   */
  async add(nodes: string[], listed: boolean): Promise<void> {
    for (const node of nodes) {
      const named = splitHostPort(node) ?? { host: node, port: this.#base.port };
      let addresses: string[];
      try {
        addresses = isIP(named.host) !== 0 ? [named.host] : await this.#resolve(named.host);
      } catch (err) {
        this.#log.warn({ node, err: (err as NodeJS.ErrnoException).code ?? String(err) }, 'fleet node name does not resolve; skipped');
        continue;
      }
      const registered = (address: string): boolean => this.#members.has(joinHostPort(address, named.port));
      for (const address of addressesToRegister(addresses, listed, registered)) this.#start(named.host, address, named.port);
    }
  }

  /** The public address of any member registered now. */
  get publicAddress(): PublicAddress | undefined {
    for (const member of this.#members.values()) if (member?.publicAddress !== undefined) return member.publicAddress;
    return undefined;
  }

  /** Whether a member other than `member` is registered now. */
  registeredBesides(member: FleetMember | undefined): boolean {
    for (const other of this.#members.values()) if (other !== undefined && other !== member && other.publicAddress !== undefined) return true;
    return false;
  }

  /** Whether any member still works (registered, or trying to). */
  hasMembers(): boolean {
    return [...this.#members.values()].some((member) => member !== undefined);
  }

  /** A pool member drains: every member, and those made later, tell their nodes. */
  async drain(): Promise<void> {
    this.#draining = true;
    await Promise.all([...this.#members.values()].map((member) => member?.drain()));
  }

  setHealth(state: 'up' | 'down'): void {
    this.#health = state;
    for (const member of this.#members.values()) member?.setHealth(state);
  }

  close(leave: boolean | undefined): void {
    this.#closed = true;
    for (const member of this.#members.values()) member?.close(leave === undefined ? {} : { leave });
  }

  #start(name: string, address: string, port: number): void {
    const id = joinHostPort(address, port);
    if (this.#closed || this.#members.has(id) || this.#members.size >= MAX_MEMBERS) return;
    const tls = this.#base.tls;
    // Dialled by address; a TLS certificate is still checked against the node's name.
    const memberTls = tls === undefined || tls === false ? tls : { ...(tls === true ? {} : tls), ...(isIP(name) === 0 ? { servername: name } : {}) };
    const member = this.#make({ ...this.#base, host: address, port, ...(memberTls === undefined ? {} : { tls: memberTls }), fleetMember: true });
    this.#members.set(id, member);
    if (this.#draining) void member.drain();
    if (this.#health === 'down') member.setHealth('down');
    this.#log.info({ node: id }, 'registering with fleet node');
    member.on('established', (publicAddress: PublicAddress) => this.#events.established(publicAddress, this.registeredBesides(member)));
    member.on('unauthenticated', () => this.#events.unauthenticated());
    member.on('nodes', (nodes: string[]) => void this.add(nodes, true));
    member.on('error', (err: Error) => {
      this.#log.warn({ node: id, err: err.message }, 'fleet node refused this service for good');
      // Kept as a node not to register with again: that would take the key back (superseded) or fail again.
      this.#members.set(id, undefined);
      if (!this.hasMembers()) this.#events.failed(err);
    });
  }
}
