import { ipv6Groups } from './addresses.js';

/**
 * Address ranges (CIDR) and the allow/deny lists made of them: who may connect to a
 * public port. Pure, no sockets. An IPv4 address written as IPv4-mapped IPv6
 * (`::ffff:10.0.0.1`, as a dual-stack socket reports it) is the IPv4 address, as for the
 * per-address limits (addresses.ts addressGroup); so is a range inside `::ffff:0:0/96`.
 */

/** One range: the first `prefix` bits of `bits` (a 32-bit IPv4 or 128-bit IPv6 number). */
export interface Cidr {
  readonly family: 4 | 6;
  readonly bits: bigint;
  readonly prefix: number;
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
const MAPPED_PREFIX = 0xffffn << 32n;

/** An address as family and number, a mapped IPv4 address as IPv4; undefined when it is none. */
export function addressBits(address: string): { family: 4 | 6; bits: bigint } | undefined {
  const parts = address.split('.');
  if (parts.length === 4 && parts.every((part) => OCTET.test(part))) {
    return { family: 4, bits: parts.reduce((n, part) => (n << 8n) | BigInt(part), 0n) };
  }
  if (!address.includes(':')) return undefined;
  const groups = ipv6Groups(address);
  if (groups === undefined) return undefined;
  const bits = groups.reduce((n, group) => (n << 16n) | BigInt(group), 0n);
  if (bits >> 32n === 0xffffn) return { family: 4, bits: bits & 0xffff_ffffn };
  return { family: 6, bits };
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
  const address = addressBits(addressText);
  if (address === undefined) return `"${text}" is not an IPv4 or IPv6 address or range`;
  const written = addressText.includes(':') ? 128 : 32;
  if (prefixText !== undefined && (!PREFIX.test(prefixText) || Number(prefixText) > written)) {
    return `"${text}" needs a prefix length from 0 to ${written} after the /`;
  }
  const prefix = prefixText === undefined ? written : Number(prefixText);
  // A range written inside the mapped block is that IPv4 range; a wider one stays IPv6.
  const range =
    written === 128 && address.family === 4
      ? prefix >= 96
        ? { family: 4 as const, bits: address.bits, prefix: prefix - 96 }
        : { family: 6 as const, bits: MAPPED_PREFIX | address.bits, prefix }
      : { ...address, prefix };
  const host = range.bits & ((1n << BigInt((range.family === 4 ? 32 : 128) - range.prefix)) - 1n);
  if (host !== 0n) return `"${text}" has bits set past its /${prefix} (the range starts at ${formatCidr({ ...range, bits: range.bits - host })})`;
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
export function contains(cidr: Cidr, address: { family: 4 | 6; bits: bigint }): boolean {
  if (cidr.family !== address.family) return false;
  const shift = BigInt((cidr.family === 4 ? 32 : 128) - cidr.prefix);
  return address.bits >> shift === cidr.bits >> shift;
}

/** Whether a list holds the address (a string, as a socket reports it). */
export function listHolds(list: readonly Cidr[], address: string): boolean {
  const bits = addressBits(address);
  return bits !== undefined && list.some((cidr) => contains(cidr, bits));
}

/**
 * Whether every level lets the address in: allowed by each level that has an allow
 * list, denied by none. So a lower level (a tenant, a service) can only narrow what
 * the levels above it allow. An address that is no address at all is let in by no list.
 */
export function permits(levels: readonly (AccessList | undefined)[], address: string): boolean {
  const bits = addressBits(address);
  for (const level of levels) {
    if (level === undefined) continue;
    if (bits === undefined) return level.allow.length === 0 && level.deny.length === 0;
    if (level.deny.some((cidr) => contains(cidr, bits))) return false;
    if (level.allow.length > 0 && !level.allow.some((cidr) => contains(cidr, bits))) return false;
  }
  return true;
}

/** The range as it is written back (`allow=` on the wire, logs): canonical, so equal ranges read the same. */
export function formatCidr(cidr: Cidr): string {
  return `${formatBits(cidr.family, cidr.bits)}/${cidr.prefix}`;
}

function formatBits(family: 4 | 6, bits: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((shift) => String((bits >> shift) & 0xffn)).join('.');
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => ((bits >> shift) & 0xffffn).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}
