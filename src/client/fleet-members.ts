import { lookup } from 'node:dns/promises';
import type { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import type { Logger } from '../log.js';
import { joinHostPort, splitHostPort } from '../protocol/addresses.js';
import type { CloseOptions, PublicAddress, RelayClientOptions } from './options.js';

/**
 * What the fleet needs of a member: a RelayRegistration, described here by shape so
 * that this file does not import the class that imports it.
 */
interface FleetMember extends EventEmitter {
  readonly publicAddress: PublicAddress | undefined;
  close(options?: CloseOptions): void;
}

/** Makes one more registration of the same service, with another node of the fleet. */
type MemberFactory = (options: RelayClientOptions) => FleetMember;

/** Most connections one service keeps to a fleet; nodes= is bounded the same way. */
const MAX_MEMBERS = 16;

/**
 * A service's registrations with the nodes of a relay fleet: one RelayRegistration per node
 * address, all with the same resume key, so every node gives the same public port and
 * can deliver public clients. Addresses come from the host list the program was given
 * (each name resolved to all its addresses) and from every node's `OK … nodes=`; the
 * same address is never registered twice. Members report their registrations here;
 * the owner announces the public address once per change, not once per node.
 */
export class FleetMembers {
  readonly #base: RelayClientOptions;
  readonly #make: MemberFactory;
  readonly #log: Logger;
  readonly #onEstablished: (address: PublicAddress) => void;
  readonly #onFailed: (err: Error) => void;
  /** By resolved `ip:port`: the registrations made, and the one the owner itself keeps (undefined). */
  readonly #members = new Map<string, FleetMember | undefined>();
  #closed = false;

  constructor(base: RelayClientOptions & { resumeKey: string }, make: MemberFactory, log: Logger, events: { established: (address: PublicAddress) => void; failed: (err: Error) => void }) {
    this.#base = base;
    this.#make = make;
    this.#log = log;
    this.#onEstablished = events.established;
    this.#onFailed = events.failed;
  }

  /** The address the owner's own connection reached: no member is made for it. */
  markOwn(address: string, port: number): void {
    // TODO(lead): plainAddress
    const ip = address.startsWith('::ffff:') ? address.slice(7) : address;
    this.#members.set(joinHostPort(ip, port), undefined);
  }

  /** Registers with each node (`host:port`, or a host on the base port) not registered with yet. */
  async add(nodes: string[]): Promise<void> {
    for (const node of nodes) {
      const named = splitHostPort(node) ?? { host: node, port: this.#base.port };
      let addresses: string[];
      try {
        addresses = isIP(named.host) !== 0 ? [named.host] : (await lookup(named.host, { all: true })).map((entry) => entry.address);
      } catch (err) {
        this.#log.warn({ node, err: (err as NodeJS.ErrnoException).code ?? String(err) }, 'fleet node name does not resolve; skipped');
        continue;
      }
      for (const address of addresses) this.#start(named.host, address, named.port);
    }
  }

  /** The public address of any member registered now. */
  get publicAddress(): PublicAddress | undefined {
    for (const member of this.#members.values()) if (member?.publicAddress !== undefined) return member.publicAddress;
    return undefined;
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
    this.#log.info({ node: id }, 'registering with fleet node');
    member.on('established', (publicAddress: PublicAddress) => this.#onEstablished(publicAddress));
    member.on('nodes', (nodes: string[]) => void this.add(nodes));
    member.on('error', (err: Error) => {
      this.#log.warn({ node: id, err: err.message }, 'fleet node refused this service for good');
      this.#members.delete(id);
      if (![...this.#members.values()].some((other) => other !== undefined)) this.#onFailed(err);
    });
  }
}
