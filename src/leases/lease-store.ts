import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';

/**
 * A lease: which key owns which public port, or which name on the names ports, until
 * when. `key` is the SHA-256 of the service's resume key (a resume key is a bearer
 * credential and is never stored); `until` is null while the service is registered,
 * else the wall-clock time in ms when its reservation ends.
 */
export type LeaseRecord = PortLease | NameLease;

interface LeaseBase {
  key: string;
  until: number | null;
  /** The tenant whose service holds it, with --tenants: only that tenant's newcomers may evict it. */
  tenant?: string;
}

/** A public port of the range. */
export interface PortLease extends LeaseBase {
  port: number;
  name?: never;
}

/** A host on the names ports (`www.example.com`, `*.example.com`): no port of the range. */
export interface NameLease extends LeaseBase {
  name: string;
  port?: never;
}

/** Where a key's clients arrive: a public port, or a host on the names ports. */
export type Place = number | string;

/** The port or the host a lease is for. */
export function placeOf(record: LeaseRecord): Place {
  return record.name ?? record.port;
}

/** The other processes' open public clients per tenant, and how to tell them ours changed. */
export interface TenantClientsShare {
  elsewhere(tenant: string): number;
  changed(): void;
}

/**
 * Where a relay's leases outlive its process. One small interface so that a single
 * relay keeps them in a file and a fleet of relays in etcd.
 */
export interface LeaseStore {
  /**
   * The leases last saved. Trouble reading them is reported and means "none": never a
   * crash. Rejects with a UsageError only when the store must not be used at all (a
   * state file others could tamper with).
   */
  load(): Promise<LeaseRecord[]>;
  /**
   * Makes the current leases durable; resolves once they are (or once the attempt
   * failed and was reported: the relay keeps serving). `current` is called at write
   * time, so saves made while a write is in flight share the next write.
   */
  save(current: () => LeaseRecord[]): Promise<void>;
  /** Stops writing (another process takes over); resolves once no write is in flight. */
  pause(): Promise<void>;
  /** Writing allowed again (the takeover was abandoned); saves the current leases. */
  resume(current: () => LeaseRecord[]): void;
  /**
   * A fleet's agreement on ports (absent for a single relay): asks the fleet for
   * `port` for this key before the relay listens on it. `known` says the port is the
   * key's own here already (its registration or reservation), which may be kept when
   * the fleet cannot be asked.
   */
  claim?(key: string, port: number, known: boolean, tenant?: string): Promise<ClaimAnswer>;
  /**
   * The same agreement for a host on the names ports: no two keys get one name, and a
   * key holds one name fleet-wide (`elsewhere` names the one it has).
   */
  claimName?(key: string, host: string, known: boolean, tenant?: string): Promise<ClaimAnswer<string>>;
  /**
   * A claim this store just granted (`claim`, `claimName`) that the relay cannot use: the
   * node's other worker holds the place. An assignment the claim made is given back at
   * once, so the fleet never keeps that place for the key. Never rejects.
   */
  giveBack?(key: string, place: Place): Promise<void>;
  /**
   * The keys a tenant holds anywhere the store reaches (a fleet: every node), so its
   * maxServices is counted fleet-wide. Rejects when the store cannot be asked. `room`:
   * a store that can (the master of several workers) first ends the tenant's oldest
   * reservations elsewhere until `key` fits within `max`, as one relay does its own.
   */
  tenantKeys?(tenant: string, room?: { key: string; max: number }): Promise<string[]>;
  /**
   * Shares each tenant's open public clients between the nodes of a fleet and the
   * workers of a node: publishes `local()` and answers the others' total for a tenant,
   * as last seen, so maxClients is counted across them. `changed()` says that `local()`
   * changed for a tenant with a maxClients: workers pass it on at once, a fleet node at
   * its next refresh (a few seconds at most).
   */
  shareTenantClients?(local: () => ReadonlyMap<string, number>): TenantClientsShare;
  /**
   * Registered services that other processes of this relay serve (one of several
   * workers), `key` not counted, so --max-services holds across them. Never rejects.
   */
  servicesElsewhere?(key: string): Promise<number>;
  /**
   * True once for a port just granted to this key that another worker of this relay
   * still listens on: listen without looking first (only the master's socket can have it).
   */
  heldBySibling?(port: number): boolean;
  /** Passes a client held at the door of a port whose key moved to another worker on to that worker. */
  handOver?(port: Place, client: Socket): void;
  /**
   * One of several workers: the most specific of `hosts` (a names-port client's host,
   * then its wildcards) that another worker has a door for, if any; the client then goes
   * there through `handOver`. Never rejects.
   */
  hostElsewhere?(hosts: string[]): Promise<string | undefined>;
  /**
   * One of several workers: the control connection of a member of pool `key` (its
   * lease key) goes to the worker that serves the pool, with `head` (every byte read
   * from it, its HELLO line first) to read again there. False, with the socket left
   * alone, when this worker is the pool's or no worker is. Never rejects.
   */
  handOverMember?(key: string, socket: Socket, head: Buffer): Promise<boolean>;
  /** The fleet's nodes, as services reach them (`host:port`), for `OK … nodes=`. */
  nodes?(): string[];
  /** Where `tenantKeys` counts a tenant's services ("the fleet", "the relay's workers"), for the refusal. */
  readonly reach?: string;
  /** Why a claim was `unreachable`, for the refusal [default: the fleet's etcd]. */
  readonly unreachable?: string;
  /** A fleet's news for the relay, from then on (set once, by the relay). */
  follow?(events: FleetEvents): void;
}

/** What a fleet tells the relay that uses it. */
export interface FleetEvents {
  /** The key's port (or name) belongs to an older assignment fleet-wide: this relay must stop serving the key there. */
  lost(key: string, place: Place): void;
  /** The fleet's nodes changed; every one of them now, as `nodes()` lists them. */
  nodes(nodes: string[]): void;
  /** The key registered at another worker of this relay, which serves `port` now: stop serving it here. */
  moved?(key: string, port: Place): void;
  /** The key's reservation here was ended for a newcomer of its tenant at another worker. */
  evicted?(key: string, port: Place): void;
}

/**
 * The fleet's answer to a claim: the port (or name) is the key's; another key has it;
 * the key has another one fleet-wide; or the fleet could not be asked in time.
 */
export type ClaimAnswer<P extends Place = number> = 'granted' | 'taken' | { elsewhere: P } | 'unreachable';

/**
 * The lease key for a resume key: what stores, logs and maps hold instead of the key.
 * With a tenant the key is the tenant's own, so another tenant presenting the same
 * resume key owns another lease: neither the port nor the session.
 */
export function leaseKey(resume: string, tenant?: string): string {
  return createHash('sha256')
    .update(tenant === undefined ? resume : `${tenant}\0${resume}`)
    .digest('hex');
}

/** A store that keeps nothing: the relay without `--state`. */
export const noLeaseStore: LeaseStore = {
  load: async () => [],
  save: async () => {},
  pause: async () => {},
  resume: () => {},
};
