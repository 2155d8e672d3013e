import type { Logger } from '../log.js';
import { joinHostPort, splitHostPort } from '../protocol/addresses.js';
import { MAX_NODE_LIST_CHARS, MAX_NODES } from '../protocol/messages.js';
import type { EtcdClient, EtcdKv } from './etcd-client.js';

/** A node's liveness key lives this long without a refresh. */
const NODE_TTL_S = 10;
/** A dropped node value is logged up to this many characters. */
const LOGGED_VALUE_CHARS = 64;

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
  /** The keys whose values were dropped at the last read, so each is logged once. */
  #invalid = new Set<string>();
  /**
   * Several workers of one node write its one key, each under a lease of its own: the
   * key lives on the last writer's lease, so each writes it every sync, and one that
   * exits (an upgrade, a crash) leaves it on a live one's lease within a sync.
   */
  readonly #shared: boolean;

  constructor(etcd: EtcdClient, prefix: string, node: string, advertise: { host: string; port: number }, log: Logger, shared = false) {
    this.#etcd = etcd;
    this.#prefix = `${prefix}nodes/`;
    this.#node = node;
    this.#address = joinHostPort(advertise.host, advertise.port);
    this.#log = log;
    this.#nodes = [this.#address];
    this.#shared = shared;
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
    } else if (this.#shared && !registered) {
      // Of several workers: on this one's lease too, in case the last writer's dies.
      await this.#etcd.put(own, this.#address, this.#lease!);
    }
    const nodes = this.#valid(kvs).sort();
    if (nodes.length === 0 || nodes.join() === this.#nodes.join()) return { registered, changed: false };
    this.#nodes = nodes;
    this.#log.info({ nodes: nodes.length }, 'fleet: nodes changed');
    return { registered, changed: true };
  }

  /**
   * The values that are `host:port`: one malformed value (written by hand, or by another
   * program) would make every `OK … nodes=` and `NODES` line unparsable for services.
   */
  #valid(kvs: EtcdKv[]): string[] {
    const invalid = new Set<string>();
    const nodes: string[] = [];
    for (const kv of kvs) {
      if (splitHostPort(kv.value) !== undefined) {
        nodes.push(kv.value);
        continue;
      }
      invalid.add(kv.key);
      if (this.#invalid.has(kv.key)) continue;
      const value = kv.value.length > LOGGED_VALUE_CHARS ? `${kv.value.slice(0, LOGGED_VALUE_CHARS)}…` : kv.value;
      this.#log.warn({ key: kv.key, value, length: kv.value.length }, 'fleet: a node key in etcd holds no host:port: that node is left out of the list');
    }
    this.#invalid = invalid;
    return nodes;
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
