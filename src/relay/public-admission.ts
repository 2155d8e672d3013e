import type { Socket } from 'node:net';
import type { Clock } from '../clock.js';
import type { RelayOptions } from '../config/defaults.js';
import { resetSocket } from '../net/splice.js';
import { addressGroup, plainAddress } from '../protocol/addresses.js';
import { ClientsPerAddress, ConnectRate } from './address-limits.js';
import type { Refusals } from './refusals.js';

/**
 * The per-address limits on public ports, applied the moment a public client is
 * accepted, before it is held or announced to a service: `--max-connect-rate` (new
 * connections per second) and `--max-clients-per-ip` (open at once, over every public
 * port, held and waiting clients included). A client over either is reset at once,
 * counted and logged (rate-limited) as a refusal; its service never hears of it.
 */
export class PublicAdmission {
  readonly #maxClientsPerIp: number;
  readonly #rate: ConnectRate | undefined;
  readonly #open = new ClientsPerAddress();
  readonly #refusals: Refusals;

  constructor(options: Pick<RelayOptions, 'maxClientsPerIp' | 'maxConnectRate'>, clock: Clock, refusals: Refusals) {
    this.#maxClientsPerIp = options.maxClientsPerIp;
    this.#rate = options.maxConnectRate > 0 ? new ConnectRate(options.maxConnectRate, clock) : undefined;
    this.#refusals = refusals;
  }

  /**
   * True when the client may go on (and is counted until it closes); false when it was
   * reset. `maxClientsPerIp` overrides the relay-wide limit for this check; the count
   * it is held against is still the relay-wide one (all public ports). A limit that
   * counts only some ports' clients (a tenant's) needs its own ClientsPerAddress.
   */
  admit(client: Socket, publicPort: number, maxClientsPerIp: number | undefined): boolean {
    maxClientsPerIp ??= this.#maxClientsPerIp;
    const address = client.remoteAddress;
    // No peer address: the client reset before it was accepted; nothing to serve.
    if (address === undefined) {
      resetSocket(client);
      return false;
    }
    if (this.#rate === undefined && maxClientsPerIp === 0) return true;
    const group = addressGroup(address);
    if (this.#rate !== undefined && !this.#rate.take(group)) {
      return this.#refuse(client, 'connect-rate', plainAddress(address), publicPort, 'over --max-connect-rate new connections a second from its address');
    }
    if (!this.#open.tryAdd(client, group, maxClientsPerIp)) {
      return this.#refuse(client, 'clients-per-ip', plainAddress(address), publicPort, `over ${maxClientsPerIp} open clients from its address`);
    }
    return true;
  }

  /**
   * A client admitted already, held against a limit known only later: a names-port
   * client's tenant's `maxClientsPerIp`, once its first bytes named the service. True
   * when it may go on; false when it was reset.
   */
  admitNamed(client: Socket, namesPort: number, maxClientsPerIp: number | undefined): boolean {
    const address = client.remoteAddress;
    if (maxClientsPerIp === undefined || maxClientsPerIp === 0 || address === undefined) return true;
    const group = addressGroup(address);
    // admit() counted it unless no limit was on at all.
    const counted = this.#rate !== undefined || this.#maxClientsPerIp > 0;
    if (counted ? this.#open.count(group) <= maxClientsPerIp : this.#open.tryAdd(client, group, maxClientsPerIp)) return true;
    return this.#refuse(client, 'clients-per-ip', plainAddress(address), namesPort, `over its tenant's ${maxClientsPerIp} open clients from its address`);
  }

  /** Counts a client accepted elsewhere (a predecessor's held client) without refusing it. */
  adopt(client: Socket): void {
    const address = client.remoteAddress;
    if (address !== undefined && this.#maxClientsPerIp > 0) this.#open.tryAdd(client, addressGroup(address), 0);
  }

  #refuse(client: Socket, reason: 'connect-rate' | 'clients-per-ip', address: string, publicPort: number, why: string): false {
    this.#refusals.count(reason, { client: address, publicPort }, `public client reset: ${why}`);
    resetSocket(client);
    return false;
  }
}
