import type { PortRange } from '../config/defaults.js';
import type { Logger } from '../log.js';
import type { ClaimAnswer, LeaseRecord, LeaseStore } from '../leases/lease-store.js';
import { b64, type EtcdClient, type EtcdKv, type EtcdOp } from './etcd-client.js';
import { NodeRegistry } from './node-registry.js';
import { TenantClients } from './tenant-clients.js';

interface FleetSettings {
  etcd: EtcdClient;
  /** Every key this fleet keeps starts with this (ends with '/'). */
  prefix: string;
  node: string;
  /** Where services reach this node, `host:port`. */
  advertise: { host: string; port: number };
  range: PortRange;
  graceMs: number;
  log: Logger;
  /** The fleet disagrees with this node's configuration: report in one line and stop. */
  onFatal: (message: string) => void;
}

/** Interval of the node's refresh, of the node list and of the due port leases. */
const TICK_MS = 2_000;
/** A new key waits at most this for the fleet's answer, then is refused (ERR limit). */
const CLAIM_WAIT_MS = 5_000;
const CLAIM_RETRY_MS = 250;
/** Port leases refreshed at once, so 1000 services do not open 1000 requests. */
const REFRESH_BATCH = 16;

interface KnownLease {
  port: number;
  /** The etcd lease id that keeps the key's assignment alive. */
  lease: string;
  refreshedAt: number;
}

/**
 * The leases of a relay fleet, in etcd. A port assignment is two keys under one etcd
 * lease with TTL = the resume grace: `ports/<port>` (the key hash holding it) and
 * `keys/<hash>` (its port), created together in a transaction that compares both as
 * absent, so two keys never get one port, even racing on different nodes. Every node
 * where the key is registered keeps that lease alive; when none does, it expires after
 * the grace and the port is free fleet-wide. A node's own liveness is `nodes/<name>`
 * under a short lease of its own. Local memory (the port pool's reservations) still
 * guards ports across an etcd stall: an assignment etcd dropped is re-created with the
 * same compare, never handed to another key here within the grace.
 */
export class EtcdLeaseStore implements LeaseStore {
  readonly #s: FleetSettings;
  readonly #ttlS: number;
  /** Live registrations here: key -> port and tenant, kept alive in etcd by the refresh. */
  #live = new Map<string, { port: number; tenant: string | undefined }>();
  #held = 0;
  readonly #known = new Map<string, KnownLease>();
  readonly #nodes: NodeRegistry;
  readonly #clients: TenantClients;
  #rangeChecked = false;
  #healthy = true;
  #ticking = false;
  #timer: NodeJS.Timeout | undefined;
  conflicts = 0;

  constructor(settings: FleetSettings) {
    this.#s = settings;
    this.#ttlS = Math.max(Math.ceil(settings.graceMs / 1000), 5);
    this.#nodes = new NodeRegistry(settings.etcd, settings.prefix, settings.node, settings.advertise, settings.log);
    this.#clients = new TenantClients(settings.etcd, settings.prefix, settings.node);
  }

  get etcd(): EtcdClient {
    return this.#s.etcd;
  }

  /** Joins the fleet (range check, node key) and refreshes from then on. etcd being down is not an error here. */
  async start(): Promise<void> {
    await this.#tick();
    this.#timer = setInterval(() => void this.#tick(), TICK_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#s.etcd.close();
  }

  get nodeCount(): number {
    return this.#nodes.count;
  }

  get portsHeld(): number {
    return this.#held;
  }

  nodes(): string[] {
    return this.#nodes.list();
  }

  /** Every assignment in the fleet, each a reservation here with a full grace until its key registers. */
  async load(): Promise<LeaseRecord[]> {
    try {
      const kvs = await this.#s.etcd.range(this.#key('keys/'), true);
      return kvs.map((kv) => ({ key: kv.key.slice(this.#key('keys/').length), port: Number(kv.value), until: null }));
    } catch (err) {
      this.#s.log.warn({ err: String(err) }, 'fleet: cannot read the port assignments from etcd; starting without them');
      return [];
    }
  }

  async save(current: () => LeaseRecord[]): Promise<void> {
    const records = current();
    this.#held = records.length;
    this.#live = new Map(records.filter((record) => record.until === null).map((record) => [record.key, { port: record.port, tenant: record.tenant }]));
    for (const key of this.#known.keys()) if (!records.some((record) => record.key === key)) this.#known.delete(key);
  }

  async pause(): Promise<void> {}

  shareTenantClients(local: () => ReadonlyMap<string, number>): (tenant: string) => number {
    return this.#clients.share(local);
  }

  async tenantKeys(tenant: string): Promise<string[]> {
    // Known unreachable: no wait on top of the claim's (the node's own count stands).
    if (!this.#healthy) throw new Error('etcd unreachable');
    const prefix = this.#key(`tenants/${tenant}/`);
    const kvs = await this.#s.etcd.range(prefix, true);
    return kvs.map((kv) => kv.key.slice(prefix.length));
  }

  resume(current: () => LeaseRecord[]): void {
    void this.save(current);
  }

  async claim(key: string, port: number, known: boolean, tenant?: string): Promise<ClaimAnswer> {
    const deadline = Date.now() + CLAIM_WAIT_MS;
    for (;;) {
      try {
        return await this.#claimOnce(key, port, tenant, deadline);
      } catch (err) {
        this.#trouble(err);
        // The key's own port here: etcd's view will be re-created by the refresh.
        if (known) return 'granted';
        if (Date.now() + CLAIM_RETRY_MS >= deadline) return 'unreachable';
        await new Promise((resolve) => setTimeout(resolve, CLAIM_RETRY_MS));
      }
    }
  }

  async #claimOnce(key: string, port: number, tenant: string | undefined, deadline: number): Promise<ClaimAnswer> {
    const { succeeded, kvs } = await this.#assign(key, port, tenant, deadline);
    if (succeeded) return 'granted';
    const mine = kvs.find((kv) => kv.key === this.#key(`keys/${key}`));
    if (mine === undefined) return 'taken';
    const theirs = Number(mine.value);
    if (theirs !== port) return { elsewhere: theirs };
    this.#known.set(key, { port, lease: mine.lease, refreshedAt: 0 });
    return 'granted';
  }

  /**
   * The transaction at the heart of the fleet: both keys, only if both are absent; a
   * tenant's key also under `tenants/<name>/`, on the same lease, where its quota is counted.
   * With a deadline (a registration waiting), no request outlasts it.
   */
  async #assign(key: string, port: number, tenant: string | undefined, deadline?: number): Promise<{ succeeded: boolean; kvs: EtcdKv[] }> {
    const etcd = this.#s.etcd;
    const left = (): number | undefined => (deadline === undefined ? undefined : deadline - Date.now());
    const lease = await etcd.grant(this.#ttlS, left());
    const byKey = this.#key(`keys/${key}`);
    const byPort = this.#key(`ports/${port}`);
    const absent = (name: string): EtcdOp => ({ key: b64(name), target: 'CREATE', create_revision: '0' });
    const put = (name: string, value: string): EtcdOp => ({ request_put: { key: b64(name), value: b64(value), lease } });
    const get = (name: string): EtcdOp => ({ request_range: { key: b64(name) } });
    const writes = [put(byKey, String(port)), put(byPort, key)];
    if (tenant !== undefined) writes.push(put(this.#key(`tenants/${tenant}/${key}`), String(port)));
    const answer = await etcd.txn([absent(byKey), absent(byPort)], writes, [get(byKey), get(byPort)], left());
    if (answer.succeeded) this.#known.set(key, { port, lease, refreshedAt: Date.now() });
    else etcd.revoke(lease).catch(() => {});
    if (!this.#healthy) this.#recovered();
    return answer;
  }

  async #tick(): Promise<void> {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      if (!this.#rangeChecked) await this.#checkRange();
      await this.#nodes.heartbeat();
      await this.#nodes.refresh();
      await this.#refreshPorts();
      await this.#clients.publish(this.#nodes.lease);
      if (!this.#healthy) this.#recovered();
    } catch (err) {
      this.#trouble(err);
    } finally {
      this.#ticking = false;
    }
  }

  async #checkRange(): Promise<void> {
    const name = this.#key('range');
    const mine = `${this.#s.range.first}-${this.#s.range.last}`;
    const answer = await this.#s.etcd.txn(
      [{ key: b64(name), target: 'CREATE', create_revision: '0' }],
      [{ request_put: { key: b64(name), value: b64(mine) } }],
      [{ request_range: { key: b64(name) } }],
    );
    const theirs = answer.kvs[0]?.value;
    if (!answer.succeeded && theirs !== mine) {
      return this.#s.onFatal(`--ports ${mine} differs from the fleet's range ${theirs ?? '?'} (etcd key ${name}); every node needs the same range`);
    }
    this.#rangeChecked = true;
  }

  /** Keeps alive the assignment of every key registered here; one that etcd dropped is re-created. */
  async #refreshPorts(): Promise<void> {
    const due = [...this.#live].filter(([key, { port }]) => {
      const known = this.#known.get(key);
      return known === undefined || known.port !== port || Date.now() - known.refreshedAt > (this.#ttlS * 1000) / 3;
    });
    for (let i = 0; i < due.length; i += REFRESH_BATCH) {
      await Promise.all(due.slice(i, i + REFRESH_BATCH).map(([key, { port, tenant }]) => this.#refresh(key, port, tenant)));
    }
  }

  async #refresh(key: string, port: number, tenant: string | undefined): Promise<void> {
    const known = this.#known.get(key);
    if (known !== undefined && known.port === port && (await this.#s.etcd.keepAlive(known.lease)) > 0) {
      known.refreshedAt = Date.now();
      return;
    }
    const { succeeded, kvs } = await this.#assign(key, port, tenant);
    if (succeeded) return void this.#s.log.info({ publicPort: port }, 'fleet: port assignment re-created in etcd');
    const mine = kvs.find((kv) => kv.key === this.#key(`keys/${key}`));
    if (mine !== undefined && Number(mine.value) === port) {
      this.#known.set(key, { port, lease: mine.lease, refreshedAt: 0 });
      return;
    }
    this.conflicts++;
    this.#known.delete(key);
    this.#s.log.error({ publicPort: port }, 'fleet: etcd gives this port (or this key) to another assignment; the service keeps it on this node');
  }

  #trouble(err: unknown): void {
    if (!this.#healthy) return;
    this.#healthy = false;
    this.#s.log.warn({ err: String(err) }, 'fleet: etcd unreachable; registered services keep working, new keys wait');
  }

  #recovered(): void {
    this.#healthy = true;
    this.#s.log.info('fleet: etcd reachable again');
  }

  #key(name: string): string {
    return `${this.#s.prefix}${name}`;
  }
}
