import type { Socket } from 'node:net';
import type { Clock } from '../clock.js';
import type { RelayOptions } from '../config/defaults.js';
import { cidrsOption } from '../config/rules.js';
import { readProxyPrelude } from '../net/proxy-prelude.js';
import { resetSocket } from '../net/splice.js';
import { addressGroup } from '../protocol/addresses.js';
import { listHolds, permits, type AccessList, type Cidr } from '../protocol/cidr.js';
import { ClientsPerAddress, ConnectRate } from './address-limits.js';
import { clientAddressOf, setProxiedEnds } from './client-address.js';
import type { Refusals } from './refusals.js';

/**
 * What a public client passes the moment it is accepted, before it is held or announced
 * to a service, in three steps a door calls in this order: `fromBalancer` (with
 * `--public-proxy-from`, the PROXY header that says who the client is), `permits` (the
 * allow/deny lists) and `admit`, the per-address limits: `--max-connect-rate` (new
 * connections per second) and `--max-clients-per-ip` (open at once, over every public
 * port, held and waiting clients included). A client that fails a step is reset at
 * once, counted and logged (rate-limited) as a refusal; its service never hears of it.
 */
export class PublicAdmission {
  readonly #maxClientsPerIp: number;
  /** The relay-wide lists (--allow, --deny); undefined without either. */
  readonly #relayList: AccessList | undefined;
  /** Balancers trusted to say who their clients are (--public-proxy-from). */
  readonly #balancers: readonly Cidr[];
  readonly #headerTimeoutMs: number;
  readonly #rate: ConnectRate | undefined;
  readonly #open = new ClientsPerAddress();
  readonly #refusals: Refusals;

  constructor(options: Pick<RelayOptions, 'maxClientsPerIp' | 'maxConnectRate' | 'allow' | 'deny' | 'publicProxyFrom' | 'handshakeTimeoutMs'>, clock: Clock, refusals: Refusals) {
    this.#maxClientsPerIp = options.maxClientsPerIp;
    const allow = cidrsOption('allow', options.allow);
    const deny = cidrsOption('deny', options.deny);
    this.#relayList = allow.length + deny.length > 0 ? { allow, deny } : undefined;
    this.#balancers = cidrsOption('publicProxyFrom', options.publicProxyFrom);
    this.#headerTimeoutMs = options.handshakeTimeoutMs;
    this.#rate = options.maxConnectRate > 0 ? new ConnectRate(options.maxConnectRate, clock) : undefined;
    this.#refusals = refusals;
  }

  /** Whether the client came through a trusted balancer, so fromBalancer must read its header first. */
  viaBalancer(client: Socket): boolean {
    return this.#balancers.length > 0 && listHolds(this.#balancers, client.remoteAddress ?? '');
  }

  /**
   * Step 1, for a client viaBalancer: reads and takes off its PROXY header, whose source
   * is the client's address from then on (clientAddressOf). True when the client may go
   * on; false when it was reset (no valid header within the handshake timeout).
   */
  async fromBalancer(client: Socket, publicPort: number): Promise<boolean> {
    const prelude = await readProxyPrelude(client, this.#headerTimeoutMs);
    if (!prelude.ok) {
      this.#refusals.count('proxy-header', { client: clientAddressOf(client)?.address, publicPort }, `public client reset: from a --public-proxy-from address, ${prelude.reason}`);
      resetSocket(client);
      return false;
    }
    if (prelude.ends !== undefined) setProxiedEnds(client, prelude.ends);
    return true;
  }

  /**
   * Step 2: the relay's lists, then `lower` (a tenant's, a service's): allowed by each
   * level that has an allow list and denied by none, else reset. True when it may go on.
   */
  permits(client: Socket, publicPort: number, lower: readonly (AccessList | undefined)[]): boolean {
    if (this.#relayList === undefined && lower.every((level) => level === undefined)) return true;
    const address = clientAddressOf(client)?.address;
    if (address !== undefined && permits([this.#relayList, ...lower], address)) return true;
    this.#refusals.count('ip-denied', { client: address, publicPort }, 'public client reset: its address is not allowed (--allow/--deny)');
    resetSocket(client);
    return false;
  }

  /** Whether the relay's lists and `lower` let this address in (a reload asks again of open tunnels). */
  allows(address: string, lower: readonly (AccessList | undefined)[]): boolean {
    return permits([this.#relayList, ...lower], address);
  }

  /**
   * Step 3: true when the client may go on (and is counted until it closes); false when it was
   * reset. `maxClientsPerIp` overrides the relay-wide limit for this check; the count
   * it is held against is still the relay-wide one (all public ports). A limit that
   * counts only some ports' clients (a tenant's) needs its own ClientsPerAddress.
   */
  admit(client: Socket, publicPort: number, maxClientsPerIp: number | undefined): boolean {
    maxClientsPerIp ??= this.#maxClientsPerIp;
    const address = clientAddressOf(client)?.address;
    // No peer address: the client reset before it was accepted; nothing to serve.
    if (address === undefined) {
      resetSocket(client);
      return false;
    }
    if (this.#rate === undefined && maxClientsPerIp === 0) return true;
    const group = addressGroup(address);
    if (this.#rate !== undefined && !this.#rate.take(group)) {
      return this.#refuse(client, 'connect-rate', address, publicPort, 'over --max-connect-rate new connections a second from its address');
    }
    if (!this.#open.tryAdd(client, group, maxClientsPerIp)) {
      return this.#refuse(client, 'clients-per-ip', address, publicPort, `over ${maxClientsPerIp} open clients from its address`);
    }
    return true;
  }

  /**
   * A client admitted already, held against a limit known only later: a names-port
   * client's tenant's `maxClientsPerIp`, once its first bytes named the service. True
   * when it may go on; false when it was reset.
   */
  admitNamed(client: Socket, namesPort: number, maxClientsPerIp: number | undefined): boolean {
    // Behind a trusted balancer: the address its PROXY header gave.
    const address = clientAddressOf(client)?.address;
    if (maxClientsPerIp === undefined || maxClientsPerIp === 0 || address === undefined) return true;
    const group = addressGroup(address);
    // admit() counted it unless no limit was on at all.
    const counted = this.#rate !== undefined || this.#maxClientsPerIp > 0;
    if (counted ? this.#open.count(group) <= maxClientsPerIp : this.#open.tryAdd(client, group, maxClientsPerIp)) return true;
    return this.#refuse(client, 'clients-per-ip', address, namesPort, `over its tenant's ${maxClientsPerIp} open clients from its address`);
  }

  /**
   * Counts a client another worker admitted, without refusing it: in the same cases
   * admit() counts, `maxClientsPerIp` being its door's limit (a tenant's, or undefined).
   */
  adopt(client: Socket, maxClientsPerIp: number | undefined): void {
    const address = clientAddressOf(client)?.address;
    const counted = this.#rate !== undefined || (maxClientsPerIp ?? this.#maxClientsPerIp) > 0;
    if (address !== undefined && counted) this.#open.tryAdd(client, addressGroup(address), 0);
  }

  #refuse(client: Socket, reason: 'connect-rate' | 'clients-per-ip', address: string, publicPort: number, why: string): false {
    this.#refusals.count(reason, { client: address, publicPort }, `public client reset: ${why}`);
    resetSocket(client);
    return false;
  }
}
