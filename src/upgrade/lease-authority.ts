import { placeOf, type ClaimAnswer, type LeaseRecord, type Place } from '../leases/lease-store.js';

/** A claim not yet seen in its worker's lease table is kept this long, then forgotten (its registration failed). */
const PENDING_CLAIM_MS = 30_000;
/**
 * A new pool's first member is registering at the worker that asked first for this
 * long: members asking meanwhile go there too. Its claim reaches the table well within
 * it; a registration that fails leaves the pool's next members at that worker, harmless.
 */
const FIRST_MEMBER_MS = 10_000;

interface Entry {
  slot: number;
  /** A public port, or a host on the names ports. */
  port: Place;
  /** null while its service is registered, else when its reservation ends (ms since the epoch). */
  until: number | null;
  tenant: string | undefined;
  /** Claimed at this time and not yet in the worker's table. */
  pendingSince: number | undefined;
}

/** A key that registered at `to`: the worker `from` must stop serving it on `port` (a port or a name). */
export interface Move {
  key: string;
  port: Place;
  from: number;
}

/**
 * With several workers (`--workers N`), the master's record of which key owns which
 * public port and which worker serves it: the one authority across workers, as etcd is
 * across the nodes of a fleet. Workers claim ports here before they listen, and report
 * their whole share after every change; a key claimed by another worker than its
 * holder moves there. Pure: no IPC, no timers (the caller gives the time).
 */
export class LeaseAuthority {
  readonly #byKey = new Map<string, Entry>();
  readonly #byPort = new Map<Place, string>();
  /** Keys claimed by another worker, to be given up by `from` once the new one reports them live. */
  readonly #moving = new Map<string, Move>();
  /** Pool keys not in the table yet, by the worker whose member asked first, oldest first. */
  readonly #firstMembers = new Map<string, { slot: number; at: number }>();

  /**
   * The answer to worker `slot` asking for `port` for `key`: the key's port is another
   * one (`elsewhere`), another key has this one (`taken`), or it is the key's now
   * (`moved` when another worker serves it there still, until it is told to give it up).
   */
  claim(slot: number, key: string, port: Place, tenant: string | undefined, now: number): ClaimAnswer<Place> | 'moved' {
    const held = this.#byKey.get(key);
    // A key back for another kind of place (a name for a port, or the reverse) gives up the old one.
    if (held !== undefined && held.port !== port && typeof held.port === typeof port) return { elsewhere: held.port };
    const owner = this.#byPort.get(port);
    if (owner !== undefined && owner !== key) return 'taken';
    const moving = held !== undefined && held.slot !== slot;
    if (moving) this.#moving.set(key, { key, port: held.port, from: held.slot });
    this.#set(key, { slot, port, until: null, tenant, pendingSince: now });
    return moving ? 'moved' : 'granted';
  }

  /**
   * Worker `slot`'s whole share now; returns the moves it completes (keys it reports live
   * that another worker must give up). Keys that moved away from it are not its to report.
   */
  report(slot: number, records: readonly LeaseRecord[], now: number): Move[] {
    const reported = new Set<string>();
    for (const record of records) {
      const held = this.#byKey.get(record.key);
      if (held !== undefined && held.slot !== slot) continue;
      if (held === undefined && this.#byPort.has(placeOf(record))) continue;
      reported.add(record.key);
      this.#set(record.key, { slot, port: placeOf(record), until: record.until, tenant: record.tenant, pendingSince: undefined });
    }
    for (const [key, entry] of [...this.#byKey]) {
      if (entry.slot !== slot || reported.has(key)) continue;
      if (entry.pendingSince !== undefined && now - entry.pendingSince < PENDING_CLAIM_MS) continue;
      this.#delete(key);
    }
    const done: Move[] = [];
    for (const move of [...this.#moving.values()]) {
      const entry = this.#byKey.get(move.key);
      if (entry === undefined || entry.slot === move.from) this.#moving.delete(move.key);
      else if (entry.slot === slot && reported.has(move.key)) {
        this.#moving.delete(move.key);
        done.push(move);
      }
    }
    return done;
  }

  /** The worker of `slot` died: its services' ports are kept for them for the grace, as any departure. */
  died(slot: number, graceMs: number, now: number): void {
    for (const [key, entry] of [...this.#byKey]) {
      if (entry.slot !== slot) continue;
      if (graceMs === 0 || entry.pendingSince !== undefined) this.#delete(key);
      else if (entry.until === null) entry.until = now + graceMs;
    }
    for (const [key, first] of this.#firstMembers) if (first.slot === slot) this.#firstMembers.delete(key);
  }

  /** The leases `slot` serves (for a worker that replaces one that died, or the state file's at the start). */
  leasesOf(slot: number): LeaseRecord[] {
    return this.#records((entry) => entry.slot === slot);
  }

  /** Every lease of every worker: what the state file keeps. */
  snapshot(): LeaseRecord[] {
    return this.#records(() => true);
  }

  /**
   * The worker that holds `key` (live, claiming or reserved) when it is another than
   * `asker`, else -1. `now` on a monotonic clock (it only times first members).
   */
  slotOfKey(key: string, asker: number, now: number): number {
    const slot = this.#byKey.get(key)?.slot ?? this.#firstMemberAt(key, asker, now);
    return slot === asker ? -1 : slot;
  }

  /**
   * Two first members of a new pool landing at two workers at once would each find no
   * worker serving it and register a pool of their own: the first to ask is where the
   * pool will be, for every member that asks before its claim is in the table.
   */
  #firstMemberAt(key: string, asker: number, now: number): number {
    for (const [oldKey, first] of this.#firstMembers) {
      if (now - first.at < FIRST_MEMBER_MS) break;
      this.#firstMembers.delete(oldKey);
    }
    const first = this.#firstMembers.get(key);
    if (first !== undefined) return first.slot;
    this.#firstMembers.set(key, { slot: asker, at: now });
    return asker;
  }

  /** The worker that serves a port now, if any. */
  slotOfPort(port: Place): number | undefined {
    const key = this.#byPort.get(port);
    return key === undefined ? undefined : this.#byKey.get(key)?.slot;
  }

  /**
   * For a names-port client at `slot` that has no exact door there: the most specific of
   * `hosts` that any worker has a door for, as `[host]` when that worker is another, else `[]`.
   */
  hostElsewhere(slot: number, hosts: string[]): string[] {
    for (const host of hosts) {
      const owner = this.slotOfPort(host);
      if (owner !== undefined) return owner === slot ? [] : [host];
    }
    return [];
  }

  /** Registered services at workers other than `slot`, `key` not counted (for --max-services across workers). */
  servicesElsewhere(slot: number, key: string): number {
    let count = 0;
    for (const [other, entry] of this.#byKey) if (entry.slot !== slot && other !== key && entry.until === null) count++;
    return count;
  }

  /**
   * Ends the tenant's reservations that end soonest (at any worker) until `key` fits
   * within `max`; returns them, for their workers to end too. Live ones are never ended.
   */
  makeRoom(tenant: string, key: string, max: number): Move[] {
    const ended: Move[] = [];
    const others = (): [string, Entry][] => [...this.#byKey].filter(([other, entry]) => entry.tenant === tenant && other !== key);
    while (others().length >= max) {
      const reserved = others().filter(([, entry]) => entry.until !== null);
      const oldest = reserved.sort(([, a], [, b]) => a.until! - b.until!)[0];
      if (oldest === undefined) break;
      const [evicted, { port, slot }] = oldest;
      this.#delete(evicted);
      ended.push({ key: evicted, port, from: slot });
    }
    return ended;
  }

  /** The keys a tenant holds at any worker, registered or reserved (its maxServices counts them all). */
  tenantKeys(tenant: string): string[] {
    return [...this.#byKey].filter(([, entry]) => entry.tenant === tenant).map(([key]) => key);
  }

  #records(which: (entry: Entry) => boolean): LeaseRecord[] {
    const records: LeaseRecord[] = [];
    for (const [key, entry] of this.#byKey) {
      if (!which(entry)) continue;
      const { port, until, tenant } = entry;
      const place = typeof port === 'string' ? { name: port } : { port };
      records.push({ key, ...place, until, ...(tenant === undefined ? {} : { tenant }) });
    }
    return records;
  }

  #set(key: string, entry: Entry): void {
    const before = this.#byKey.get(key);
    if (before !== undefined && before.port !== entry.port) this.#byPort.delete(before.port);
    this.#byKey.set(key, entry);
    this.#byPort.set(entry.port, key);
  }

  #delete(key: string): void {
    const entry = this.#byKey.get(key);
    if (entry === undefined) return;
    this.#byKey.delete(key);
    if (this.#byPort.get(entry.port) === key) this.#byPort.delete(entry.port);
  }
}
