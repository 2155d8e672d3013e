/**
 * Addresses as text: `host:port` both ways, IPv4-mapped IPv6 unwrapped, and the one
 * IPv6 parser every module uses. Pure, no sockets, so each spelling can be unit-tested.
 */

const PORT = /^[1-9][0-9]{0,4}$/;
// Host names, IPv4 and IPv6 literals (brackets optional); the relay never resolves it.
const HOST = /^(\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Fa-f:.]{2,45}|[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}))$/;
const HEXTET = /^[0-9A-Fa-f]{1,4}$/;
// No leading zeros: 010 is octal to some parsers and decimal to others.
const OCTET = /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/;

/** A port as the protocol writes it: 1-65535 without leading zeros, or also 0 when allowed. */
export function parsePort(text: string | undefined, allowZero = false): number | undefined {
  if (text === undefined) return undefined;
  if (allowZero && text === '0') return 0;
  if (!PORT.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

/** Whether `text` is shaped like a host name or an IP literal (bracketed or not). */
export function isHost(text: string): boolean {
  return HOST.test(text);
}

/** `host:port`, with brackets around an IPv6 literal. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Inverse of joinHostPort; brackets are removed from IPv6 literals. */
export function splitHostPort(text: string): { host: string; port: number } | undefined {
  const colon = text.lastIndexOf(':');
  if (colon <= 0) return undefined;
  let host = text.slice(0, colon);
  const port = parsePort(text.slice(colon + 1));
  if (port === undefined || !HOST.test(host)) return undefined;
  if (host.startsWith('[')) host = host.slice(1, -1);
  else if (host.includes(':')) return undefined; // an IPv6 literal needs brackets here
  return { host, port };
}

/** An address as the service should see it: IPv4 without the v6-mapped prefix. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/**
 * The eight 16-bit groups of an IPv6 address in any spelling (`::`, a dotted IPv4
 * tail, a `%zone`, which is dropped); undefined for anything that is not one.
 */
export function ipv6Groups(address: string): number[] | undefined {
  const [text = '', zone, ...more] = address.split('%');
  if (zone === '' || more.length > 0) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const [headText = '', tailText] = halves;
  const head = groupsOf(headText, tailText === undefined);
  if (tailText === undefined) return head?.length === 8 ? head : undefined;
  const tail = groupsOf(tailText, true);
  if (head === undefined || tail === undefined) return undefined;
  // `::` stands for at least one group of zeros.
  const missing = 8 - head.length - tail.length;
  if (missing < 1) return undefined;
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}

/** Colon-separated hextets; the last may be a dotted IPv4 address (two groups) when `ends` says it ends the address. */
function groupsOf(text: string, ends: boolean): number[] | undefined {
  if (text === '') return [];
  const pieces = text.split(':');
  const groups: number[] = [];
  for (const [i, piece] of pieces.entries()) {
    if (HEXTET.test(piece)) {
      groups.push(parseInt(piece, 16));
      continue;
    }
    const octets = ends && i === pieces.length - 1 ? ipv4Octets(piece) : undefined;
    if (octets === undefined) return undefined;
    const [a, b, c, d] = octets as [number, number, number, number];
    groups.push((a << 8) | b, (c << 8) | d);
  }
  return groups;
}

function ipv4Octets(text: string): number[] | undefined {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((part) => OCTET.test(part)) ? parts.map(Number) : undefined;
}

/**
 * The key an address is limited under: an IPv4 address as it is (also when written as
 * IPv4-mapped IPv6), an IPv6 address by its /64. One host or one customer line gets a
 * whole /64, so limiting single IPv6 addresses would let it rotate through 2^64 of them.
 */
export function addressGroup(address: string): string {
  const groups = ipv6Groups(address);
  if (groups === undefined) return address;
  const [a, b, c, d, e, f, g, h] = groups as [number, number, number, number, number, number, number, number];
  if (a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && f === 0xffff) {
    return `${g >> 8}.${g & 0xff}.${h >> 8}.${h & 0xff}`;
  }
  return `${[a, b, c, d].map((n) => n.toString(16)).join(':')}::/64`;
}
