import type { Logger } from '../log.js';
import type { ClaimAnswer } from '../leases/lease-store.js';
import { b64, type EtcdClient, type EtcdKv, type EtcdOp } from './etcd-client.js';

/** Port assignments checked or refreshed at once, so 1000 services do not open 1000 requests. */
const REFRESH_BATCH = 16;

/**
 * Where one kind of assignment lives in etcd: the key's place (`keys/<hash>`: its
 * port), the place's key (`ports/<port>`: its hash) and when it was first made. Ports
 * and names (`names/…`, a host for a place) are agreed the same way, apart.
 */
export interface AssignmentLayout {
  keys: string;
  places: string;
  since: string;
  /** What a log line calls a place, and names it by. */
  what: 'port' | 'name';
  bindings: (place: string) => Record<string, unknown>;
}

export const PORT_LAYOUT: AssignmentLayout = { keys: 'keys/', places: 'ports/', since: 'since/', what: 'port', bindings: (place) => ({ publicPort: Number(place) }) };
export const NAME_LAYOUT: AssignmentLayout = { keys: 'names/keys/', places: 'names/hosts/', since: 'names/since/', what: 'name', bindings: (place) => ({ name: place }) };

/** What this node knows of an assignment it takes part in. */
interface Held {
  /** A port in decimal, or a host. */
  place: string;
  /** The etcd lease id that keeps the assignment alive. */
  lease: string;
  refreshedAt: number;
  /** Wall-clock ms when the assignment was first made, fleet-wide: the older one wins a conflict. */
  since: number;
  /** Made by this node's own claim (not found in etcd, made by another node of the key). */
  made?: true;
}

/** A key registered on this node now: its port (in decimal) or host, and its tenant's key to write with it. */
export interface LiveKey {
  place: string;
  tenant: string | undefined;
}

/** The other side of a conflict: the assignment etcd has instead of ours. */
interface Rival {
  key: string;
  lease: string;
}

/**
 * The fleet's port (or name) assignments as this node takes part in them. One assignment is the
 * keys `keys/<hash>` (its port), `ports/<port>` (its hash) and `since/<hash>` (when it
 * was first made), with `tenants/<tenant>/<hash>` for a tenant's key, all under one
 * etcd lease with TTL = the resume grace, created in a transaction that compares
 * `keys/<hash>` and `ports/<port>` as absent. Every node where the key is registered
 * checks each tick that etcd still has it: an assignment etcd lost (its data wiped, a
 * lease expired in a stall) is written again with its first `since`, and when etcd
 * gives the port or the key to another assignment meanwhile, the older of the two
 * keeps it: the younger's lease is revoked by the node of the older, and the node of
 * the younger gives its port up (`lost`), so that no two keys are served on one port.
 * With NAME_LAYOUT the same holds for hosts on the names ports, under `names/`.
 */
export class PortAssignments {
  readonly #etcd: EtcdClient;
  readonly #prefix: string;
  readonly #ttlS: number;
  readonly #log: Logger;
  readonly #held = new Map<string, Held>();
  readonly #layout: AssignmentLayout;
  /** Told when this node must give a key's place up to an older assignment. */
  lost: (key: string, place: string) => void = () => {};
  /** Conflicts found (another assignment in etcd for a place or key served here), each resolved one way or the other. */
  conflicts = 0;

  constructor(etcd: EtcdClient, prefix: string, ttlS: number, log: Logger, layout: AssignmentLayout = PORT_LAYOUT) {
    this.#layout = layout;
    this.#etcd = etcd;
    this.#prefix = prefix;
    this.#ttlS = ttlS;
    this.#log = log;
  }

  /** One attempt at `place` for `key`, every request within `deadline`. */
  async claim(key: string, place: string, tenant: string | undefined, deadline: number): Promise<ClaimAnswer<string>> {
    const { succeeded, kvs } = await this.#assign(key, place, tenant, this.#held.get(key)?.since ?? Date.now(), deadline);
    if (succeeded) {
      this.#held.get(key)!.made = true;
      return 'granted';
    }
    const mine = kvs.find((kv) => kv.key === this.#key(`${this.#layout.keys}${key}`));
    if (mine === undefined) return 'taken';
    const theirs = mine.value;
    if (theirs !== place) return { elsewhere: theirs };
    this.#held.set(key, { place, lease: mine.lease, refreshedAt: 0, since: sinceIn(kvs, this.#key(`${this.#layout.since}${key}`)) });
    return 'granted';
  }

  /**
   * Undoes the assignment this node's claim just made for `key` at `place` (the node
   * could not use it): its lease is revoked. One found in etcd, another node's, stays.
   */
  async giveBack(key: string, place: string): Promise<void> {
    const held = this.#held.get(key);
    if (held === undefined || held.place !== place || held.made === undefined) return;
    this.#held.delete(key);
    await this.#etcd.revoke(held.lease).catch(() => {});
  }

  /** Forgets the assignments of keys this node no longer has. */
  keepOnly(keys: ReadonlySet<string>): void {
    for (const key of this.#held.keys()) if (!keys.has(key)) this.#held.delete(key);
  }

  /** Checks every live key's assignment against etcd: refreshes ours, writes back the missing, settles conflicts. */
  async check(live: ReadonlyMap<string, LiveKey>): Promise<void> {
    if (live.size === 0) return;
    const places = this.#key(this.#layout.places);
    const owners = new Map((await this.#etcd.range(places, true)).map((kv) => [kv.key.slice(places.length), kv]));
    const due = [...live].filter(([key, { place }]) => this.#due(key, place, owners.get(place)));
    for (let i = 0; i < due.length; i += REFRESH_BATCH) {
      await Promise.all(due.slice(i, i + REFRESH_BATCH).map(([key, { place, tenant }]) => this.#keep(key, place, tenant, owners.get(place))));
    }
  }

  #due(key: string, place: string, owner: EtcdKv | undefined): boolean {
    const held = this.#held.get(key);
    if (owner?.value !== key || held === undefined || held.place !== place || held.lease !== owner.lease) return true;
    return Date.now() - held.refreshedAt > (this.#ttlS * 1000) / 3;
  }

  async #keep(key: string, place: string, tenant: string | undefined, owner: EtcdKv | undefined): Promise<void> {
    if (owner !== undefined && owner.value !== key) return this.#contest(key, place, tenant, { key: owner.value, lease: owner.lease });
    if (owner !== undefined && (await this.#etcd.keepAlive(owner.lease)) > 0) {
      const since = this.#held.get(key)?.since ?? (await this.#sinceOf(key)) ?? 0;
      this.#held.set(key, { place, lease: owner.lease, refreshedAt: Date.now(), since });
      return;
    }
    const { succeeded, kvs } = await this.#assign(key, place, tenant, this.#held.get(key)?.since ?? Date.now());
    if (succeeded) return void this.#log.info(this.#layout.bindings(place), `fleet: ${this.#layout.what} assignment re-created in etcd`);
    const mine = kvs.find((kv) => kv.key === this.#key(`${this.#layout.keys}${key}`));
    if (mine !== undefined && mine.value === place) {
      // Another node of the key wrote it back first.
      this.#held.set(key, { place, lease: mine.lease, refreshedAt: 0, since: sinceIn(kvs, this.#key(`${this.#layout.since}${key}`), this.#held.get(key)?.since) });
      return;
    }
    const other = kvs.find((kv) => kv.key === this.#key(`${this.#layout.places}${place}`));
    // Either the place has another key now, or the key another place (a node that never had it gave it one).
    const rival = other !== undefined && other.value !== key ? { key: other.value, lease: other.lease } : mine === undefined ? undefined : { key, lease: mine.lease };
    if (rival !== undefined) await this.#contest(key, place, tenant, rival);
  }

  /** Two assignments for one place or one key: the older keeps it, fleet-wide; ties go to the lower hash. */
  async #contest(key: string, place: string, tenant: string | undefined, rival: Rival): Promise<void> {
    this.conflicts++;
    const mine = this.#held.get(key)?.since ?? Date.now();
    const recorded = await this.#sinceOf(rival.key);
    // No `since/` may also mean the rival was revoked a moment ago (by another node of
    // this key): then nothing stands against ours, and the next check writes it back.
    if (recorded === undefined && !(await this.#stillAssigned(rival))) return;
    const theirs = recorded ?? 0;
    if (mine < theirs || (mine === theirs && key < rival.key)) {
      await this.#etcd.revoke(rival.lease);
      const { succeeded } = await this.#assign(key, place, tenant, mine);
      // Not written: the next check tries again.
      if (succeeded) this.#log.warn(this.#layout.bindings(place), `fleet: etcd had given this ${this.#layout.what} (or this key) to a younger assignment; taken back for the older one`);
      return;
    }
    this.#held.delete(key);
    this.#log.error(this.#layout.bindings(place), `fleet: etcd gives this ${this.#layout.what} (or this key) to an older assignment; this node gives the ${this.#layout.what} up`);
    this.lost(key, place);
  }

  /**
   * When a key's assignment was first made; undefined when etcd has no `since/` for it
   * (a node of an older version wrote it, which then counts as the oldest).
   */
  async #sinceOf(key: string): Promise<number | undefined> {
    const name = this.#key(`${this.#layout.since}${key}`);
    const since = sinceIn(await this.#etcd.range(name), name, Number.NaN);
    return Number.isNaN(since) ? undefined : since;
  }

  /** Whether the rival's assignment still stands: its `keys/` entry, on the lease it was seen with. */
  async #stillAssigned(rival: Rival): Promise<boolean> {
    const name = this.#key(`${this.#layout.keys}${rival.key}`);
    return (await this.#etcd.range(name)).some((kv) => kv.key === name && kv.lease === rival.lease);
  }

  /**
   * The transaction at the heart of the fleet: the assignment's keys, only if both
   * `keys/<hash>` and `ports/<port>` are absent; else reads them. With a deadline (a
   * registration waiting), no request outlasts it.
   */
  async #assign(key: string, place: string, tenant: string | undefined, since: number, deadline?: number): Promise<{ succeeded: boolean; kvs: EtcdKv[] }> {
    const etcd = this.#etcd;
    const left = (): number | undefined => (deadline === undefined ? undefined : deadline - Date.now());
    const lease = await etcd.grant(this.#ttlS, left());
    const byKey = this.#key(`${this.#layout.keys}${key}`);
    const byPlace = this.#key(`${this.#layout.places}${place}`);
    const sinceKey = this.#key(`${this.#layout.since}${key}`);
    const absent = (name: string): EtcdOp => ({ key: b64(name), target: 'CREATE', create_revision: '0' });
    const put = (name: string, value: string): EtcdOp => ({ request_put: { key: b64(name), value: b64(value), lease } });
    const get = (name: string): EtcdOp => ({ request_range: { key: b64(name) } });
    const writes = [put(byKey, place), put(byPlace, key), put(sinceKey, String(since))];
    if (tenant !== undefined) writes.push(put(this.#key(`tenants/${tenant}/${key}`), place));
    const answer = await etcd.txn([absent(byKey), absent(byPlace)], writes, [get(byKey), get(byPlace), get(sinceKey)], left());
    if (answer.succeeded) this.#held.set(key, { place, lease, refreshedAt: Date.now(), since });
    else etcd.revoke(lease).catch(() => {});
    return answer;
  }

  #key(name: string): string {
    return `${this.#prefix}${name}`;
  }
}

function sinceIn(kvs: EtcdKv[], name: string, fallback = 0): number {
  const text = kvs.find((kv) => kv.key === name)?.value;
  const since = Number(text);
  return text === undefined || !Number.isSafeInteger(since) ? fallback : since;
}
