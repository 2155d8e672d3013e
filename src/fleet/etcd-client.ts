import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';

/** TLS towards etcd: a CA to trust, and a client certificate when etcd asks for one. */
export interface EtcdTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** One key-value pair as etcd's JSON gateway returns it (keys and values decoded). */
export interface EtcdKv {
  key: string;
  value: string;
  createRevision: number;
  lease: string;
}

/** A comparison or an operation of a transaction, in the gateway's JSON form. */
export type EtcdOp = Record<string, unknown>;

/** Every request must be answered within this; an etcd that is stopped must not stall a caller for long. */
const REQUEST_TIMEOUT_MS = 2_000;
/** Longest answer read from etcd; a range over our prefix stays far below. */
const MAX_BODY_BYTES = 16 << 20;

/** Figures for metrics: requests, errors, and the summed latency of those answered. */
class EtcdFigures {
  requests = 0;
  errors = 0;
  latencySumSeconds = 0;
  readonly latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2] as const;
  readonly latencyCounts: number[] = new Array<number>(this.latencyBuckets.length).fill(0);

  observe(seconds: number): void {
    this.latencySumSeconds += seconds;
    const index = this.latencyBuckets.findIndex((bound) => seconds <= bound);
    if (index >= 0) this.latencyCounts[index]!++;
  }
}

export const b64 = (text: string): string => Buffer.from(text).toString('base64');
const unb64 = (text: string | undefined): string => Buffer.from(text ?? '', 'base64').toString();

/** The key just past every key that starts with prefix: the `range_end` of a prefix range. */
function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix);
  bytes[bytes.length - 1]!++;
  return bytes.toString('base64');
}

/**
 * A client of etcd's v3 JSON gateway (the HTTP API every etcd since 3.4 serves on its
 * client port), over node:http and node:https: no dependency, and unlike the built-in
 * fetch, node:https takes a client certificate without undici's Agent. Endpoints are
 * tried in turn; a request that fails moves on to the next one for the following call.
 */
export class EtcdClient {
  readonly figures = new EtcdFigures();
  readonly #endpoints: URL[];
  readonly #agents: { http: http.Agent; https: https.Agent };
  #current = 0;

  constructor(endpoints: URL[], tls: EtcdTls = {}) {
    this.#endpoints = endpoints;
    this.#agents = {
      http: new http.Agent({ keepAlive: true, maxSockets: 16 }),
      https: new https.Agent({ keepAlive: true, maxSockets: 16, ...tls }),
    };
  }

  async range(key: string, prefix = false): Promise<EtcdKv[]> {
    const answer = await this.call('/v3/kv/range', { key: b64(key), ...(prefix ? { range_end: prefixEnd(key) } : {}) });
    return kvsOf(answer);
  }

  /** A transaction; `succeeded`, and the kvs of every range among the operations that ran. */
  async txn(compare: EtcdOp[], success: EtcdOp[], failure: EtcdOp[], timeoutMs?: number): Promise<{ succeeded: boolean; kvs: EtcdKv[] }> {
    const answer = await this.call('/v3/kv/txn', { compare, success, failure }, timeoutMs);
    const responses = (answer['responses'] as Record<string, unknown>[] | undefined) ?? [];
    const kvs = responses.flatMap((response) => kvsOf((response['response_range'] as Record<string, unknown> | undefined) ?? {}));
    return { succeeded: answer['succeeded'] === true, kvs };
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.call('/v3/kv/put', { key: b64(key), value: b64(value), ...(lease === undefined ? {} : { lease }) });
  }

  async grant(ttlSeconds: number, timeoutMs?: number): Promise<string> {
    const answer = await this.call('/v3/lease/grant', { TTL: String(ttlSeconds) }, timeoutMs);
    const id = answer['ID'];
    if (typeof id !== 'string') throw new Error('etcd granted no lease');
    return id;
  }

  /** Refreshes a lease; its remaining TTL, 0 when etcd no longer has it. */
  async keepAlive(id: string): Promise<number> {
    const answer = await this.call('/v3/lease/keepalive', { ID: id });
    const result = answer['result'] as Record<string, unknown> | undefined;
    return Number(result?.['TTL'] ?? 0);
  }

  async revoke(id: string): Promise<void> {
    await this.call('/v3/lease/revoke', { ID: id });
  }

  close(): void {
    this.#agents.http.destroy();
    this.#agents.https.destroy();
  }

  /** POSTs one JSON request; rejects on a timeout (2 s unless a caller with a deadline asks for less), a network error or an etcd error answer. */
  async call(path: string, body: unknown, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Record<string, unknown>> {
    const endpoint = this.#endpoints[this.#current % this.#endpoints.length]!;
    const started = performance.now();
    this.figures.requests++;
    try {
      const agent = endpoint.protocol === 'https:' ? this.#agents.https : this.#agents.http;
      const answer = await post(new URL(path, endpoint), JSON.stringify(body), agent, Math.max(1, Math.min(timeoutMs, REQUEST_TIMEOUT_MS)));
      this.figures.observe((performance.now() - started) / 1000);
      return answer;
    } catch (err) {
      this.figures.errors++;
      this.#current++;
      throw err;
    }
  }
}

function kvsOf(answer: Record<string, unknown>): EtcdKv[] {
  const kvs = (answer['kvs'] as Record<string, string>[] | undefined) ?? [];
  return kvs.map((kv) => ({ key: unb64(kv['key']), value: unb64(kv['value']), createRevision: Number(kv['create_revision'] ?? 0), lease: kv['lease'] ?? '0' }));
}

function post(url: URL, body: string, agent: http.Agent, timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? https : http).request(url, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      timeout: timeoutMs,
    });
    request.on('timeout', () => request.destroy(new Error(`etcd did not answer within ${timeoutMs} ms`)));
    request.on('error', reject);
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) request.destroy(new Error('etcd answer too large'));
        else chunks.push(chunk);
      });
      response.on('error', reject);
      response.on('end', () => {
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
        } catch {
          return reject(new Error(`etcd answered ${response.statusCode ?? '?'} with no JSON`));
        }
        if (response.statusCode !== 200 || parsed['error'] !== undefined) {
          return reject(new Error(`etcd answered ${response.statusCode ?? '?'}: ${String(parsed['message'] ?? parsed['error'])}`));
        }
        resolve(parsed);
      });
    });
    request.end(body);
  });
}
