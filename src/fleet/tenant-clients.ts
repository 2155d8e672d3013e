import type { EtcdClient } from './etcd-client.js';

/**
 * Each tenant's open public clients, shared between the nodes of a fleet so maxClients
 * counts fleet-wide: this node's counts under `clients/<tenant>/<node>`, on the node's
 * lease so that a dead node's counts go with it, and the other nodes' totals read back.
 * One of several workers of a node writes `clients/<tenant>/<node>/<worker>` under its
 * own lease, and reads only the other nodes' (its siblings' come from the master).
 */
export class TenantClients {
  readonly #etcd: EtcdClient;
  readonly #prefix: string;
  readonly #node: string;
  readonly #own: string;
  #local: (() => ReadonlyMap<string, number>) | undefined;
  /** Each tenant's open clients on the other nodes, as of the last publish(). */
  #elsewhere = new Map<string, number>();

  constructor(etcd: EtcdClient, prefix: string, node: string, worker?: number) {
    this.#etcd = etcd;
    this.#prefix = `${prefix}clients/`;
    this.#node = node;
    this.#own = worker === undefined ? node : `${node}/${worker}`;
  }

  /** From now on publish() shares `local()`; the answer looks up the other nodes' total. */
  share(local: () => ReadonlyMap<string, number>): (tenant: string) => number {
    this.#local = local;
    return (tenant) => this.#elsewhere.get(tenant) ?? 0;
  }

  /** Writes this node's counts and reads everyone's; nothing before share() or without a node lease. */
  async publish(nodeLease: string | undefined): Promise<void> {
    const local = this.#local?.();
    if (local === undefined || nodeLease === undefined) return;
    await Promise.all([...local].map(([tenant, count]) => this.#etcd.put(`${this.#prefix}${tenant}/${this.#own}`, String(count), nodeLease)));
    const totals = new Map<string, number>();
    for (const kv of await this.#etcd.range(this.#prefix, true)) {
      const [tenant, node] = kv.key.slice(this.#prefix.length).split('/');
      if (tenant === undefined || node === this.#node) continue;
      totals.set(tenant, (totals.get(tenant) ?? 0) + (Number(kv.value) || 0));
    }
    this.#elsewhere = totals;
  }
}
