import type { Logger } from '../log.js';
import type { ClaimAnswer } from '../leases/lease-store.js';
import { b64, type EtcdClient, type EtcdKv, type EtcdOp } from './etcd-client.js';

/** Port assignments checked or refreshed at once, so 1000 services do not open 1000 requests. */
const REFRESH_BATCH = 16;

/** What this node knows of an assignment it takes part in. */
interface Held {
  port: number;
  /** The etcd lease id that keeps the assignment alive. */
  lease: string;
  refreshedAt: number;
  /** Wall-clock ms when the assignment was first made, fleet-wide: the older one wins a conflict. */
  since: number;
}

/** A key registered on this node now: its port, and its tenant's key to write with it. */
export interface LiveKey {
  port: number;
  tenant: string | undefined;
}

/** The other side of a conflict: the assignment etcd has instead of ours. */
interface Rival {
  key: string;
  lease: string;
}

/**
 * The fleet's port assignments as this node takes part in them. One assignment is the
 * keys `keys/<hash>` (its port), `ports/<port>` (its hash) and `since/<hash>` (when it
 * was first made), with `tenants/<tenant>/<hash>` for a tenant's key, all under one
 * etcd lease with TTL = the resume grace, created in a transaction that compares
 * `keys/<hash>` and `ports/<port>` as absent. Every node where the key is registered
 * checks each tick that etcd still has it: an assignment etcd lost (its data wiped, a
 * lease expired in a stall) is written again with its first `since`, and when etcd
 * gives the port or the key to another assignment meanwhile, the older of the two
 * keeps it: the younger's lease is revoked by the node of the older, and the node of
 * the younger gives its port up (`lost`), so that no two keys are served on one port.
 */
export class PortAssignments {
  readonly #etcd: EtcdClient;
  readonly #prefix: string;
  readonly #ttlS: number;
  readonly #log: Logger;
  readonly #held = new Map<string, Held>();
  /** Told when this node must give a key's port up to an older assignment. */
  lost: (key: string, port: number) => void = () => {};
  /** Conflicts found (another assignment in etcd for a port or key served here), each resolved one way or the other. */
  conflicts = 0;

  constructor(etcd: EtcdClient, prefix: string, ttlS: number, log: Logger) {
    this.#etcd = etcd;
    this.#prefix = prefix;
    this.#ttlS = ttlS;
    this.#log = log;
  }

  /** One attempt at `port` for `key`, every request within `deadline`. */
  async claim(key: string, port: number, tenant: string | undefined, deadline: number): Promise<ClaimAnswer> {
    const { succeeded, kvs } = await this.#assign(key, port, tenant, this.#held.get(key)?.since ?? Date.now(), deadline);
    if (succeeded) return 'granted';
    const mine = kvs.find((kv) => kv.key === this.#key(`keys/${key}`));
    if (mine === undefined) return 'taken';
    const theirs = Number(mine.value);
    if (theirs !== port) return { elsewhere: theirs };
    this.#held.set(key, { port, lease: mine.lease, refreshedAt: 0, since: sinceIn(kvs, this.#key(`since/${key}`)) });
    return 'granted';
  }

  /** Forgets the assignments of keys this node no longer has. */
  keepOnly(keys: ReadonlySet<string>): void {
    for (const key of this.#held.keys()) if (!keys.has(key)) this.#held.delete(key);
  }

  /** Checks every live key's assignment against etcd: refreshes ours, writes back the missing, settles conflicts. */
  async check(live: ReadonlyMap<string, LiveKey>): Promise<void> {
    if (live.size === 0) return;
    const ports = this.#key('ports/');
    const owners = new Map((await this.#etcd.range(ports, true)).map((kv) => [Number(kv.key.slice(ports.length)), kv]));
    const due = [...live].filter(([key, { port }]) => this.#due(key, port, owners.get(port)));
    for (let i = 0; i < due.length; i += REFRESH_BATCH) {
      await Promise.all(due.slice(i, i + REFRESH_BATCH).map(([key, { port, tenant }]) => this.#keep(key, port, tenant, owners.get(port))));
    }
  }

  #due(key: string, port: number, owner: EtcdKv | undefined): boolean {
    const held = this.#held.get(key);
    if (owner?.value !== key || held === undefined || held.port !== port || held.lease !== owner.lease) return true;
    return Date.now() - held.refreshedAt > (this.#ttlS * 1000) / 3;
  }

  async #keep(key: string, port: number, tenant: string | undefined, owner: EtcdKv | undefined): Promise<void> {
    if (owner !== undefined && owner.value !== key) return this.#contest(key, port, tenant, { key: owner.value, lease: owner.lease });
    if (owner !== undefined && (await this.#etcd.keepAlive(owner.lease)) > 0) {
      const since = this.#held.get(key)?.since ?? (await this.#sinceOf(key)) ?? 0;
      this.#held.set(key, { port, lease: owner.lease, refreshedAt: Date.now(), since });
      return;
    }
    const { succeeded, kvs } = await this.#assign(key, port, tenant, this.#held.get(key)?.since ?? Date.now());
    if (succeeded) return void this.#log.info({ publicPort: port }, 'fleet: port assignment re-created in etcd');
    const mine = kvs.find((kv) => kv.key === this.#key(`keys/${key}`));
    if (mine !== undefined && Number(mine.value) === port) {
      // Another node of the key wrote it back first.
      this.#held.set(key, { port, lease: mine.lease, refreshedAt: 0, since: sinceIn(kvs, this.#key(`since/${key}`), this.#held.get(key)?.since) });
      return;
    }
    const other = kvs.find((kv) => kv.key === this.#key(`ports/${port}`));
    // Either the port has another key now, or the key another port (a node that never had it gave it one).
    const rival = other !== undefined && other.value !== key ? { key: other.value, lease: other.lease } : mine === undefined ? undefined : { key, lease: mine.lease };
    if (rival !== undefined) await this.#contest(key, port, tenant, rival);
  }

  /** Two assignments for one port or one key: the older keeps it, fleet-wide; ties go to the lower hash. */
  async #contest(key: string, port: number, tenant: string | undefined, rival: Rival): Promise<void> {
    this.conflicts++;
    const mine = this.#held.get(key)?.since ?? Date.now();
    const recorded = await this.#sinceOf(rival.key);
    // No `since/` may also mean the rival was revoked a moment ago (by another node of
    // this key): then nothing stands against ours, and the next check writes it back.
    if (recorded === undefined && !(await this.#stillAssigned(rival))) return;
    const theirs = recorded ?? 0;
    if (mine < theirs || (mine === theirs && key < rival.key)) {
      await this.#etcd.revoke(rival.lease);
      const { succeeded } = await this.#assign(key, port, tenant, mine);
      // Not written: the next check tries again.
      if (succeeded) this.#log.warn({ publicPort: port }, 'fleet: etcd had given this port (or this key) to a younger assignment; taken back for the older one');
      return;
    }
    this.#held.delete(key);
    this.#log.error({ publicPort: port }, 'fleet: etcd gives this port (or this key) to an older assignment; this node gives the port up');
    this.lost(key, port);
  }

  /**
   * When a key's assignment was first made; undefined when etcd has no `since/` for it
   * (a node of an older version wrote it, which then counts as the oldest).
   */
  async #sinceOf(key: string): Promise<number | undefined> {
    const name = this.#key(`since/${key}`);
    const since = sinceIn(await this.#etcd.range(name), name, Number.NaN);
    return Number.isNaN(since) ? undefined : since;
  }

  /** Whether the rival's assignment still stands: its `keys/` entry, on the lease it was seen with. */
  async #stillAssigned(rival: Rival): Promise<boolean> {
    const name = this.#key(`keys/${rival.key}`);
    return (await this.#etcd.range(name)).some((kv) => kv.key === name && kv.lease === rival.lease);
  }

  /**
   * The transaction at the heart of the fleet: the assignment's keys, only if both
   * `keys/<hash>` and `ports/<port>` are absent; else reads them. With a deadline (a
   * registration waiting), no request outlasts it.
   */
  async #assign(key: string, port: number, tenant: string | undefined, since: number, deadline?: number): Promise<{ succeeded: boolean; kvs: EtcdKv[] }> {
    const etcd = this.#etcd;
    const left = (): number | undefined => (deadline === undefined ? undefined : deadline - Date.now());
    const lease = await etcd.grant(this.#ttlS, left());
    const byKey = this.#key(`keys/${key}`);
    const byPort = this.#key(`ports/${port}`);
    const sinceKey = this.#key(`since/${key}`);
    const absent = (name: string): EtcdOp => ({ key: b64(name), target: 'CREATE', create_revision: '0' });
    const put = (name: string, value: string): EtcdOp => ({ request_put: { key: b64(name), value: b64(value), lease } });
    const get = (name: string): EtcdOp => ({ request_range: { key: b64(name) } });
    const writes = [put(byKey, String(port)), put(byPort, key), put(sinceKey, String(since))];
    if (tenant !== undefined) writes.push(put(this.#key(`tenants/${tenant}/${key}`), String(port)));
    const answer = await etcd.txn([absent(byKey), absent(byPort)], writes, [get(byKey), get(byPort), get(sinceKey)], left());
    if (answer.succeeded) this.#held.set(key, { port, lease, refreshedAt: Date.now(), since });
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
