import type { Logger } from '../log.js';
import { joinHostPort } from '../protocol/addresses.js';
import { MAX_NODE_LIST_CHARS, MAX_NODES } from '../protocol/messages.js';
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

  /** At most 16 nodes in under 600 characters, so `OK … nodes=` and `NODES` stay within the line limit. */
  list(): string[] {
    const listed: string[] = [];
    let length = 0;
    for (const node of this.#nodes) {
      length += node.length + 1;
      if (listed.length === MAX_NODES || length > MAX_NODE_LIST_CHARS) break;
      listed.push(node);
    }
    return listed;
  }

  /**
   * Keeps the node's key alive and reads the list of live nodes again. `registered`:
   * the key was written (anew: its lease was lost, or etcd lost the key); `changed`:
   * the list differs from the last one.
   */
  async sync(): Promise<{ registered: boolean; changed: boolean }> {
    let registered = await this.#heartbeat();
    const own = `${this.#prefix}${this.#node}`;
    const kvs = await this.#etcd.range(this.#prefix, true);
    if (!registered && !kvs.some((kv) => kv.key === own)) {
      // etcd lost the key (its data wiped) but not the node's lease: write it again.
      await this.#register(this.#lease!);
      kvs.push({ key: own, value: this.#address, createRevision: 0, lease: this.#lease! });
      registered = true;
    }
    const nodes = kvs.map((kv) => kv.value).sort();
    if (nodes.length === 0 || nodes.join() === this.#nodes.join()) return { registered, changed: false };
    this.#nodes = nodes;
    this.#log.info({ nodes: nodes.length }, 'fleet: nodes changed');
    return { registered, changed: true };
  }

  /** Refreshes the node's lease; true when it had to be granted (and the key written) anew. */
  async #heartbeat(): Promise<boolean> {
    if (this.#lease !== undefined && (await this.#etcd.keepAlive(this.#lease)) > 0) return false;
    this.#lease = await this.#etcd.grant(NODE_TTL_S);
    await this.#register(this.#lease);
    return true;
  }

  async #register(lease: string): Promise<void> {
    await this.#etcd.put(`${this.#prefix}${this.#node}`, this.#address, lease);
    // The logger names the node already (fleet.ts); the address is what other nodes will list.
    this.#log.info({ address: this.#address }, 'fleet: node registered in etcd');
  }
}
