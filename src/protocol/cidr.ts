import { ipv6Groups } from './addresses.js';

/**
 * Address ranges (CIDR) and the allow/deny lists made of them: who may connect to a
 * public port. Pure, no sockets. An IPv4 address written as IPv4-mapped IPv6
 * (`::ffff:10.0.0.1`, as a dual-stack socket reports it) is the IPv4 address, as for the
 * per-address limits (addresses.ts addressGroup); so is a range inside `::ffff:0:0/96`.
 */

/**
 * One range: the first `prefix` bits of `words`, the address as 32-bit words (one for
 * IPv4, four for IPv6). Numbers, not a bigint: each accept compares against every range.
 */
export interface Cidr {
  readonly family: 4 | 6;
  readonly words: readonly number[];
  readonly prefix: number;
}

/** An address as family and 32-bit words. */
export interface AddressWords {
  readonly family: 4 | 6;
  readonly words: readonly number[];
}

/** One level's lists (the relay's, a tenant's, a service's); an empty allow list allows everyone. */
export interface AccessList {
  readonly allow: readonly Cidr[];
  readonly deny: readonly Cidr[];
}

/** Most ranges one allow or deny list may hold: each accept checks them all. */
export const MAX_CIDRS = 64;

const OCTET = /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/;
const PREFIX = /^(0|[1-9][0-9]{0,2})$/;

/** An address as family and words, a mapped IPv4 address as IPv4; undefined when it is none. */
export function addressWords(address: string): AddressWords | undefined {
  const parts = address.split('.');
  if (parts.length === 4 && parts.every((part) => OCTET.test(part))) {
    return { family: 4, words: [parts.reduce((n, part) => n * 256 + Number(part), 0)] };
  }
  if (!address.includes(':')) return undefined;
  const groups = ipv6Groups(address);
  if (groups === undefined) return undefined;
  const words = [0, 1, 2, 3].map((i) => groups[2 * i]! * 0x10000 + groups[2 * i + 1]!);
  if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) return { family: 4, words: [words[3]!] };
  return { family: 6, words };
}

/** The mask of word `i` under a prefix: its leading bits that the prefix covers. */
function maskOf(prefix: number, i: number): number {
  const bits = Math.min(32, Math.max(0, prefix - 32 * i));
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/**
 * `A.B.C.D/N`, `IPV6/N`, or a bare address (one host: /32 or /128); a string saying
 * what is wrong otherwise. Strict: no zone, no leading zeros, no bits set past the
 * prefix (10.0.0.1/8 is refused, so a typo never widens or shifts a range unseen).
 */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  if (addressText.includes('%')) return `"${text}" has a zone (%...), which a range cannot have`;
  const address = addressWords(addressText);
  if (address === undefined) return `"${text}" is not an IPv4 or IPv6 address or range`;
  const written = addressText.includes(':') ? 128 : 32;
  if (prefixText !== undefined && (!PREFIX.test(prefixText) || Number(prefixText) > written)) {
    return `"${text}" needs a prefix length from 0 to ${written} after the /`;
  }
  const prefix = prefixText === undefined ? written : Number(prefixText);
  // A range written inside the mapped block is that IPv4 range; a wider one stays IPv6.
  const range: Cidr =
    written === 128 && address.family === 4
      ? prefix >= 96
        ? { family: 4, words: address.words, prefix: prefix - 96 }
        : { family: 6, words: [0, 0, 0xffff, address.words[0]!], prefix }
      : { ...address, prefix };
  const start = range.words.map((word, i) => (word & maskOf(range.prefix, i)) >>> 0);
  if (start.some((word, i) => word !== range.words[i])) {
    return `"${text}" has bits set past its /${prefix} (the range starts at ${formatCidr({ ...range, words: start })})`;
  }
  return range;
}

/**
 * A comma-separated list of ranges (as on a command line and in `allow=`), or what is
 * wrong with it, quoting the first bad range. Blanks around commas are allowed.
 */
export function parseCidrList(text: string): Cidr[] | string {
  const parts = text.split(',').map((part) => part.trim());
  if (parts.length > MAX_CIDRS) return `more than ${MAX_CIDRS} ranges`;
  const list: Cidr[] = [];
  for (const part of parts) {
    if (part === '') return 'an empty range (two commas, or a comma at an end)';
    const cidr = parseCidr(part);
    if (typeof cidr === 'string') return cidr;
    list.push(cidr);
  }
  return list;
}

/** Whether the range holds the address (of the same family). */
export function contains(cidr: Cidr, address: AddressWords): boolean {
  if (cidr.family !== address.family) return false;
  for (let i = 0; i < cidr.words.length; i++) {
    const mask = maskOf(cidr.prefix, i);
    if (mask === 0) return true;
    if (((cidr.words[i]! ^ address.words[i]!) & mask) !== 0) return false;
  }
  return true;
}

/** Whether a list holds the address (a string, as a socket reports it). */
export function listHolds(list: readonly Cidr[], address: string): boolean {
  const words = addressWords(address);
  return words !== undefined && list.some((cidr) => contains(cidr, words));
}

/**
 * Whether every level lets the address in: allowed by each level that has an allow
 * list, denied by none. So a lower level (a tenant, a service) can only narrow what
 * the levels above it allow. An address that is no address at all is let in by no list.
 */
export function permits(levels: readonly (AccessList | undefined)[], address: string): boolean {
  const words = addressWords(address);
  for (const level of levels) {
    if (level === undefined) continue;
    if (words === undefined) return level.allow.length === 0 && level.deny.length === 0;
    if (level.deny.some((cidr) => contains(cidr, words))) return false;
    if (level.allow.length > 0 && !level.allow.some((cidr) => contains(cidr, words))) return false;
  }
  return true;
}

/** The range as it is written back (`allow=` on the wire, logs): canonical, so equal ranges read the same. */
export function formatCidr(cidr: Cidr): string {
  if (cidr.family === 4) {
    const word = cidr.words[0]!;
    return `${[24, 16, 8, 0].map((shift) => (word >>> shift) & 0xff).join('.')}/${cidr.prefix}`;
  }
  const groups = cidr.words.flatMap((word) => [(word >>> 16).toString(16), (word & 0xffff).toString(16)]);
  return `${groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::')}/${cidr.prefix}`;
}
