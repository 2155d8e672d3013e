import type { Socket } from 'node:net';
import type { ClaimAnswer, FleetEvents, LeaseRecord, LeaseStore, Place, TenantClientsShare } from '../leases/lease-store.js';

/**
 * The lease store of one of several workers of a fleet node (`--etcd` with
 * `--workers N`): etcd is the authority across the nodes, the master across the
 * node's workers. Each worker talks to etcd itself, under the node's one name and
 * address (one entry in the fleet's node list whatever the worker count), and asks the
 * master for what only the node's own workers must agree on: which of them serves a
 * key's port, the services and tenants' clients at the others, held clients to pass on.
 */
export class WorkerOfNodeStore implements LeaseStore {
  readonly #fleet: LeaseStore;
  readonly #node: LeaseStore;
  readonly #loadFleet: boolean;
  /** Where a tenant's services are counted, for a refusal that says so. */
  readonly reach = 'the fleet';

  /**
   * `loadFleet`: this worker takes the fleet's assignments as reservations at its start
   * (the first worker, at the relay's start); the others, restarted and upgraded ones
   * included, get theirs from the master, so that no port has a door at two workers.
   */
  constructor(fleet: LeaseStore, node: LeaseStore, loadFleet: boolean) {
    this.#fleet = fleet;
    this.#node = node;
    this.#loadFleet = loadFleet;
  }

  async load(): Promise<LeaseRecord[]> {
    return this.#loadFleet ? this.#fleet.load() : [];
  }

  async save(current: () => LeaseRecord[]): Promise<void> {
    await Promise.all([this.#fleet.save(current), this.#node.save(current)]);
  }

  async pause(): Promise<void> {
    await Promise.all([this.#fleet.pause(), this.#node.pause()]);
  }

  resume(current: () => LeaseRecord[]): void {
    this.#fleet.resume(current);
    this.#node.resume(current);
  }

  /**
   * etcd first: its answer stands fleet-wide. Then the master, which says whether
   * another worker of this node serves the key there now (the port moves here).
   */
  async claim(key: string, port: number, known: boolean, tenant?: string): Promise<ClaimAnswer> {
    const fleet = (await this.#fleet.claim?.(key, port, known, tenant)) ?? 'granted';
    if (fleet !== 'granted') return fleet;
    const node = (await this.#node.claim?.(key, port, known, tenant)) ?? 'granted';
    if (node !== 'granted') await this.#fleet.giveBack?.(key, port);
    return node;
  }

  /** As claim, for a host on the names ports. */
  async claimName(key: string, host: string, known: boolean, tenant?: string): Promise<ClaimAnswer<string>> {
    const fleet = (await this.#fleet.claimName?.(key, host, known, tenant)) ?? 'granted';
    if (fleet !== 'granted') return fleet;
    const node = (await this.#node.claimName?.(key, host, known, tenant)) ?? 'granted';
    if (node !== 'granted') await this.#fleet.giveBack?.(key, host);
    return node;
  }

  /** etcd has every worker's keys; when it cannot be asked, the node's, from the master. */
  async tenantKeys(tenant: string): Promise<string[]> {
    try {
      return await this.#fleet.tenantKeys!(tenant);
    } catch {
      return this.#node.tenantKeys!(tenant);
    }
  }

  /** The other nodes' clients (etcd, each worker under a key of its own) and the node's other workers' (the master). */
  shareTenantClients(local: () => ReadonlyMap<string, number>): TenantClientsShare {
    const otherNodes = this.#fleet.shareTenantClients?.(local);
    const otherWorkers = this.#node.shareTenantClients?.(local);
    return {
      elsewhere: (tenant) => (otherNodes?.elsewhere(tenant) ?? 0) + (otherWorkers?.elsewhere(tenant) ?? 0),
      changed: () => {
        otherNodes?.changed();
        otherWorkers?.changed();
      },
    };
  }

  servicesElsewhere(key: string): Promise<number> {
    return this.#node.servicesElsewhere?.(key) ?? Promise.resolve(0);
  }

  heldBySibling(port: number): boolean {
    return this.#node.heldBySibling?.(port) ?? false;
  }

  handOver(port: Place, client: Socket): void {
    this.#node.handOver?.(port, client);
  }

  handOverMember(key: string, socket: Socket, head: Buffer): Promise<boolean> {
    return this.#node.handOverMember?.(key, socket, head) ?? Promise.resolve(false);
  }

  hostElsewhere(hosts: string[]): Promise<string | undefined> {
    return this.#node.hostElsewhere?.(hosts) ?? Promise.resolve(undefined);
  }

  nodes(): string[] {
    return this.#fleet.nodes?.() ?? [];
  }

  /** The fleet's news (lost ports, nodes) and the master's (moved keys) alike. */
  follow(events: FleetEvents): void {
    this.#fleet.follow?.(events);
    this.#node.follow?.(events);
  }
}
