import type { Logger } from '../log.js';
import { joinHostPort } from '../protocol/addresses.js';
import type { EtcdClient } from './etcd-client.js';

/** A node's liveness key lives this long without a refresh. */
const NODE_TTL_S = 10;

/**
 * The fleet's nodes as etcd knows them: this node's `nodes/<name>` key under a short
 * lease of its own (whatever else dies with the node hangs on that lease too), and the
 * addresses of every node seen alive.
 */
export class NodeRegistry {
  readonly #etcd: EtcdClient;
  readonly #prefix: string;
  readonly #node: string;
  readonly #address: string;
  readonly #log: Logger;
  /** Where services reach each node, `host:port`, sorted; this node alone until etcd answers. */
  #nodes: string[];
  #lease: string | undefined;

  constructor(etcd: EtcdClient, prefix: string, node: string, advertise: { host: string; port: number }, log: Logger) {
    this.#etcd = etcd;
    this.#prefix = `${prefix}nodes/`;
    this.#node = node;
    this.#address = joinHostPort(advertise.host, advertise.port);
    this.#log = log;
    this.#nodes = [this.#address];
  }

  /** The node's own etcd lease, once it has one. */
  get lease(): string | undefined {
    return this.#lease;
  }

  get count(): number {
    return this.#nodes.length;
  }

  /** At most 16 nodes in under 600 characters, so `OK … nodes=` stays within the line limit. */
  list(): string[] {
    const listed: string[] = [];
    let length = 0;
    for (const node of this.#nodes) {
      length += node.length + 1;
      if (listed.length === 16 || length > 600) break;
      listed.push(node);
    }
    return listed;
  }

  /** Keeps the node's key alive; one whose lease etcd no longer knows is registered again. */
  async heartbeat(): Promise<void> {
    if (this.#lease !== undefined && (await this.#etcd.keepAlive(this.#lease)) > 0) return;
    this.#lease = await this.#etcd.grant(NODE_TTL_S);
    await this.#etcd.put(`${this.#prefix}${this.#node}`, this.#address, this.#lease);
    // The logger names the node already (fleet.ts); the address is what other nodes will list.
    this.#log.info({ address: this.#address }, 'fleet: node registered in etcd');
  }

  /** Reads the list of live nodes again. */
  async refresh(): Promise<void> {
    const kvs = await this.#etcd.range(this.#prefix, true);
    const nodes = kvs.map((kv) => kv.value).sort();
    if (nodes.length > 0 && nodes.join() !== this.#nodes.join()) {
      this.#nodes = nodes;
      this.#log.info({ nodes: nodes.length }, 'fleet: nodes changed');
    }
  }
}
