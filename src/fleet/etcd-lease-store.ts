import type { PortRange } from '../config/defaults.js';
import type { Logger } from '../log.js';
import type { ClaimAnswer, FleetEvents, LeaseRecord, LeaseStore, Place, TenantClientsShare } from '../leases/lease-store.js';
import type { FleetView } from '../monitor/fleet-view.js';
import { joinHostPort } from '../protocol/addresses.js';
import { NAME_LAYOUT, PortAssignments, type LiveKey } from './assignments.js';
import { b64, type EtcdClient } from './etcd-client.js';
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
  /** One of several workers of the node (`--workers`): which one; each talks to etcd itself. */
  worker?: number;
}

/** Interval of the node's refresh, of the node list and of the due port leases. */
const TICK_MS = 2_000;
/** A new key waits at most this for the fleet's answer, then is refused (ERR limit). */
const CLAIM_WAIT_MS = 5_000;
const CLAIM_RETRY_MS = 250;
/**
 * The leases of a relay fleet, in etcd: the port assignments (assignments.ts), the
 * nodes (node-registry.ts) and each tenant's clients (tenant-clients.ts), refreshed on
 * one tick. Local memory (the port pool's reservations) still guards ports across an
 * etcd stall: an assignment etcd dropped is re-created with the same compare, never
 * handed to another key here within the grace.
 */
export class EtcdLeaseStore implements LeaseStore {
  readonly #s: FleetSettings;
  /** Live registrations here: key -> port (or name) and tenant, kept alive in etcd by the refresh. */
  #live = new Map<string, LiveKey>();
  #liveNames = new Map<string, LiveKey>();
  #held = 0;
  readonly #assignments: PortAssignments;
  readonly #names: PortAssignments;
  readonly #nodes: NodeRegistry;
  readonly #clients: TenantClients;
  #rangeChecked = false;
  #healthy = true;
  #lastError: { message: string; at: number } | undefined;
  #ticking = false;
  #timer: NodeJS.Timeout | undefined;
  #events: FleetEvents | undefined;
  readonly reach = 'the fleet';

  constructor(settings: FleetSettings) {
    this.#s = settings;
    const ttlS = Math.max(Math.ceil(settings.graceMs / 1000), 5);
    this.#assignments = new PortAssignments(settings.etcd, settings.prefix, ttlS, settings.log);
    this.#assignments.lost = (key, port) => this.#events?.lost(key, Number(port));
    this.#names = new PortAssignments(settings.etcd, settings.prefix, ttlS, settings.log, NAME_LAYOUT);
    this.#names.lost = (key, host) => this.#events?.lost(key, host);
    const shared = settings.worker !== undefined;
    this.#nodes = new NodeRegistry(settings.etcd, settings.prefix, settings.node, settings.advertise, settings.log, shared);
    this.#clients = new TenantClients(settings.etcd, settings.prefix, settings.node, settings.worker);
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

  /** Assignments etcd gave to another key (or port) while this node served them. */
  get conflicts(): number {
    return this.#assignments.conflicts + this.#names.conflicts;
  }

  get portsHeld(): number {
    return this.#held;
  }

  nodes(): string[] {
    return this.#nodes.list();
  }

  /** The node, its peers and etcd's health, for `relay status` and the dashboard; reads only. */
  view(): FleetView {
    const address = joinHostPort(this.#s.advertise.host, this.#s.advertise.port);
    const error = this.#lastError;
    return {
      node: this.#s.node,
      address,
      peers: this.#nodes.list().filter((node) => node !== address),
      etcd: { reachable: this.#healthy, lastError: error?.message ?? null, lastErrorAt: error?.at ?? null },
    };
  }

  /** Every assignment in the fleet, ports and names, each a reservation here with a full grace until its key registers. */
  async load(): Promise<LeaseRecord[]> {
    try {
      const ports = await this.#s.etcd.range(this.#key('keys/'), true);
      const names = await this.#s.etcd.range(this.#key(NAME_LAYOUT.keys), true);
      return [
        ...ports.map((kv) => ({ key: kv.key.slice(this.#key('keys/').length), port: Number(kv.value), until: null })),
        ...names.map((kv) => ({ key: kv.key.slice(this.#key(NAME_LAYOUT.keys).length), name: kv.value, until: null })),
      ];
    } catch (err) {
      this.#s.log.warn({ err: String(err) }, 'fleet: cannot read the port assignments from etcd; starting without them');
      return [];
    }
  }

  async save(current: () => LeaseRecord[]): Promise<void> {
    const records = current();
    this.#held = records.length;
    const live = records.filter((record) => record.until === null);
    this.#live = new Map(live.flatMap((record) => (record.port === undefined ? [] : [[record.key, { place: String(record.port), tenant: record.tenant }]])));
    this.#liveNames = new Map(live.flatMap((record) => (record.name === undefined ? [] : [[record.key, { place: record.name, tenant: record.tenant }]])));
    this.#assignments.keepOnly(new Set(records.flatMap((record) => (record.port === undefined ? [] : [record.key]))));
    this.#names.keepOnly(new Set(records.flatMap((record) => (record.name === undefined ? [] : [record.key]))));
  }

  follow(events: FleetEvents): void {
    this.#events = events;
  }

  async pause(): Promise<void> {}

  shareTenantClients(local: () => ReadonlyMap<string, number>): TenantClientsShare {
    // etcd hears of a change at the node's next refresh: a write per client would cost more than the quota is worth.
    return { elsewhere: this.#clients.share(local), changed: () => {} };
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
    const answer = await this.#claim(this.#assignments, key, String(port), known, tenant);
    return typeof answer === 'object' ? { elsewhere: Number(answer.elsewhere) } : answer;
  }

  claimName(key: string, host: string, known: boolean, tenant?: string): Promise<ClaimAnswer<string>> {
    return this.#claim(this.#names, key, host, known, tenant);
  }

  async giveBack(key: string, place: Place): Promise<void> {
    await (typeof place === 'number' ? this.#assignments.giveBack(key, String(place)) : this.#names.giveBack(key, place));
  }

  async #claim(assignments: PortAssignments, key: string, place: string, known: boolean, tenant: string | undefined): Promise<ClaimAnswer<string>> {
    const deadline = Date.now() + CLAIM_WAIT_MS;
    for (;;) {
      try {
        const answer = await assignments.claim(key, place, tenant, deadline);
        if (!this.#healthy) this.#recovered();
        return answer;
      } catch (err) {
        this.#trouble(err);
        // The key's own port here: etcd's view will be re-created by the refresh.
        if (known) return 'granted';
        if (Date.now() + CLAIM_RETRY_MS >= deadline) return 'unreachable';
        await new Promise((resolve) => setTimeout(resolve, CLAIM_RETRY_MS));
      }
    }
  }

  async #tick(): Promise<void> {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      const { registered, changed } = await this.#nodes.sync();
      // Again after etcd lost the node's key: it may have lost the range too.
      if (!this.#rangeChecked || registered) await this.#checkRange();
      if (changed) this.#events?.nodes(this.#nodes.list());
      await this.#assignments.check(this.#live);
      await this.#names.check(this.#liveNames);
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
      const message = `--ports ${mine} differs from the fleet's range ${theirs ?? '?'} (etcd key ${name}); every node needs the same range`;
      // A node serving already does not stop for a newcomer that wrote its range first after etcd lost it.
      if (this.#rangeChecked) return void this.#s.log.error(message);
      return this.#s.onFatal(message);
    }
    this.#rangeChecked = true;
  }

  #trouble(err: unknown): void {
    this.#lastError = { message: String(err), at: Date.now() };
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
