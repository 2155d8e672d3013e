import { hostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';

/*
 * Which Host headers the --metrics listener answers. DNS rebinding: a page on a name
 * the attacker controls has that name resolve to the listener's address, and the
 * visitor's browser then reads the listener as that page's own origin (from inside the
 * firewall, past a loopback bind). The browser still sends the attacker's name as
 * Host, so answering only the listener's own names and addresses stops it. Only the
 * name counts, not the port: a port forward (ssh -L 8080:localhost:9100, docker -p)
 * changes the port, and the attack needs a name, not a port.
 */

const WILDCARDS = new Set(['', '0.0.0.0', '::']);

/** The name part of a Host header, lower case, without port, brackets or a final dot; undefined if malformed. */
export function hostName(header: string): string | undefined {
  const text = header.trim().toLowerCase();
  let name: string;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0 || (end + 1 < text.length && !/^:\d{1,5}$/.test(text.slice(end + 1)))) return undefined;
    name = text.slice(1, end);
  } else {
    const colon = text.indexOf(':');
    if (colon >= 0 && !/^:\d{1,5}$/.test(text.slice(colon))) return undefined;
    name = colon < 0 ? text : text.slice(0, colon);
  }
  name = name.endsWith('.') ? name.slice(0, -1) : name;
  return name === '' ? undefined : name;
}

/** `localhost` and its subdomains (RFC 6761: they never leave the machine), and the loopback addresses. */
export function isLoopback(name: string): boolean {
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  const v4 = name.startsWith('::ffff:') ? name.slice(7) : name;
  if (isIP(v4) === 4) return v4.startsWith('127.');
  return name === '::1';
}

/** Every address of the machine's interfaces now; they change (DHCP, a VPN), so read when needed. */
function interfaceAddresses(): Set<string> {
  const addresses = new Set<string>();
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) addresses.add(entry.address.split('%')[0]!.toLowerCase());
  }
  return addresses;
}

/** The names a listener bound to `bind` answers to, plus `extra` (--metrics-host). */
export class ServedHosts {
  readonly #names: Set<string>;
  #localhost: boolean;
  readonly #anyInterface: boolean;

  constructor(bind: string, extra: readonly string[] = []) {
    const own = bind.toLowerCase().replace(/^\[(.*)\]$/, '$1');
    this.#anyInterface = WILDCARDS.has(own);
    this.#localhost = this.#anyInterface || isLoopback(own);
    this.#names = new Set([hostname().toLowerCase(), ...extra.map((name) => hostName(name) ?? name.toLowerCase())]);
    if (!this.#anyInterface) this.#names.add(own);
  }

  /** Adds the address the listener actually bound (a bind by name answers to it too); a loopback one makes this a loopback bind. */
  addBound(address: string): void {
    const own = address.split('%')[0]!.toLowerCase();
    if (WILDCARDS.has(own)) return;
    this.#names.add(own);
    if (isLoopback(own)) this.#localhost = true;
  }

  /** Whether a request with this Host header is answered. None at all (HTTP/1.0) is: no browser omits it. */
  allows(header: string | undefined): boolean {
    if (header === undefined) return true;
    const name = hostName(header);
    if (name === undefined) return false;
    if (this.#names.has(name)) return true;
    // A loopback bind answers to the localhost names and every loopback address: no other machine has them.
    if (this.#localhost && isLoopback(name)) return true;
    return this.#anyInterface && isIP(name) !== 0 && interfaceAddresses().has(name);
  }
}
