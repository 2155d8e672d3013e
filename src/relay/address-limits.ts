import type { Clock } from '../clock.js';

/**
 * Limits kept per client address: how many public clients one address has open, and how
 * fast it may open new ones. Pure bookkeeping, no sockets: public-admission.ts applies them.
 */

/** Something that says once when it has closed: a socket, in practice. */
interface Closes {
  once(event: 'close', listener: () => void): unknown;
}

/**
 * Open public clients per address group. An entry exists only while its group has a
 * client open, so the table is never larger than the number of open connections.
 */
export class ClientsPerAddress {
  readonly #open = new Map<string, number>();

  /** Groups with at least one client open. */
  get size(): number {
    return this.#open.size;
  }

  count(group: string): number {
    return this.#open.get(group) ?? 0;
  }

  /**
   * Counts `client` under `group` until it closes, unless the group already has `limit`
   * open (0: no limit). The limit is the caller's, per call, so different ports (a
   * tenant's) can have different limits over one table.
   */
  tryAdd(client: Closes, group: string, limit: number): boolean {
    const open = this.#open.get(group) ?? 0;
    if (limit > 0 && open >= limit) return false;
    this.#open.set(group, open + 1);
    client.once('close', () => {
      const left = (this.#open.get(group) ?? 1) - 1;
      if (left > 0) this.#open.set(group, left);
      else this.#open.delete(group);
    });
    return true;
  }
}

/** Addresses whose connect rate is remembered at once (about 9 MiB when full); see ConnectRate. */
const MAX_RATE_ADDRESSES = 65_536;

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * New connections per second per address group: a token bucket each, holding up to one
 * second's worth (so a browser's burst of parallel connections passes) and refilled at
 * the rate. The table is kept in least-recently-seen order. A bucket untouched long
 * enough to be full again is the same as no bucket, so the oldest are dropped as new
 * addresses arrive; when the table is at its cap anyway (more than MAX_RATE_ADDRESSES
 * addresses in about a second, which is a distributed flood no per-address limit stops),
 * the least recently seen address is forgotten and starts again with a full bucket:
 * memory stays bounded and the relay fails open for that address rather than refusing
 * every newcomer.
 */
export class ConnectRate {
  readonly #perMs: number;
  readonly #capacity: number;
  readonly #clock: Clock;
  readonly #maxAddresses: number;
  readonly #buckets = new Map<string, Bucket>();
  /** Addresses forgotten while their bucket was not yet full (only at the cap). */
  forgotten = 0;

  constructor(perSecond: number, clock: Clock, maxAddresses = MAX_RATE_ADDRESSES) {
    this.#perMs = perSecond / 1000;
    this.#capacity = Math.max(1, perSecond);
    this.#clock = clock;
    this.#maxAddresses = maxAddresses;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** Takes a token for one new connection from `group`; false when it has none left. */
  take(group: string): boolean {
    const now = this.#clock.now();
    const bucket = this.#buckets.get(group);
    let tokens = this.#capacity;
    if (bucket !== undefined) {
      this.#buckets.delete(group);
      tokens = this.#refilled(bucket, now);
    } else {
      this.#makeRoom(now);
    }
    const allowed = tokens >= 1;
    this.#buckets.set(group, { tokens: allowed ? tokens - 1 : tokens, at: now });
    return allowed;
  }

  #refilled(bucket: Bucket, now: number): number {
    return Math.min(this.#capacity, bucket.tokens + (now - bucket.at) * this.#perMs);
  }

  /** Drops a few of the oldest buckets that are full again, and one more if still at the cap. */
  #makeRoom(now: number): void {
    for (let i = 0; i < 2; i++) {
      const oldest = this.#buckets.entries().next().value as [string, Bucket] | undefined;
      if (oldest === undefined || this.#refilled(oldest[1], now) < this.#capacity) break;
      this.#buckets.delete(oldest[0]);
    }
    if (this.#buckets.size < this.#maxAddresses) return;
    const oldest = this.#buckets.keys().next().value as string | undefined;
    if (oldest !== undefined) this.#buckets.delete(oldest);
    this.forgotten++;
  }
}
