import { splitHostPort } from './addresses.js';

/**
 * Names on a shared port (docs/protocol.md §18): what a service may ask for in
 * `HELLO … name=`, how a name and the relay's domain make a host, and which
 * registered host a client's SNI or Host header reaches. Pure: no sockets.
 */

/** Longest name a service may ask for, relative to the relay's domain. */
export const MAX_SERVICE_NAME_CHARS = 200;

const LABEL = '[a-z0-9-]{1,63}';
const SERVICE_NAME = new RegExp(`^(?:\\*|(?:\\*\\.)?${LABEL}(?:\\.${LABEL})*)$`);
/** A host a client may name: labels of letters, digits, `-` and `_`, at most 253 characters. */
const CLIENT_HOST = /^[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*$/;

/** SERVICE_NAME in words, for the messages that tell a person what a name may be. */
export const SERVICE_NAME_RULE = 'DNS labels of a-z 0-9 - (each 1-63, 200 characters in all), or * or *.LABELS';

/** Whether `text` is a name a service may ask for: `www`, `api.eu`, `*` or `*.eu`. */
export function isServiceName(text: string): boolean {
  return text.length <= MAX_SERVICE_NAME_CHARS && SERVICE_NAME.test(text);
}

/** The name itself when it is one a service may ask for, else undefined. */
export function parseServiceName(text: string): string | undefined {
  return isServiceName(text) ? text : undefined;
}

/** The public host of a name under a domain: `www` and `example.com` make `www.example.com`. */
export function hostOfName(name: string, domain: string): string {
  return `${name}.${domain.toLowerCase().replace(/\.$/, '')}`;
}

/**
 * A host as a client named it (SNI, Host header), in the form registered hosts are
 * kept: lowercase, without a trailing dot. Undefined for what no name can match (an IP
 * literal, a character no host name has).
 */
export function clientHost(raw: string): string | undefined {
  const host = raw.toLowerCase().replace(/\.$/, '');
  return host.length <= 253 && CLIENT_HOST.test(host) ? host : undefined;
}

/**
 * The registered hosts that may serve `host`, best first: the host itself, then the
 * wildcards above it, longest first (`a.b.example.com`: `*.b.example.com`, then
 * `*.example.com`, then `*.com`).
 */
export function hostCandidates(host: string): string[] {
  const candidates = [host];
  for (let dot = host.indexOf('.'); dot !== -1; dot = host.indexOf('.', dot + 1)) candidates.push(`*${host.slice(dot)}`);
  return candidates;
}

/**
 * Whether a tenant's pattern allows a name (both relative to the domain): `*` allows
 * every name, `*.alice` every name ending in `.alice` (wildcards such as `*.alice`
 * included, `alice` itself not), and anything else only itself.
 */
export function nameAllowed(name: string, pattern: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return name.endsWith(pattern.slice(1));
  return name === pattern;
}

/**
 * `OK`'s `HOST:PORT`, where HOST may also be a wildcard name's host (`*.eu.example.com`):
 * only a service that asked for such a name is ever sent one.
 */
export function splitPublicAddress(text: string): { host: string; port: number } | undefined {
  if (!text.startsWith('*.')) return splitHostPort(text);
  const rest = splitHostPort(text.slice(2));
  return rest === undefined || rest.host.includes(':') ? undefined : { host: `*.${rest.host}`, port: rest.port };
}

/** Whether `text` is a host a name registers (`www.example.com`, `*.example.com`), as kept in a lease. */
export function isRegisteredHost(text: string): boolean {
  const host = text.startsWith('*.') ? text.slice(2) : text;
  return clientHost(host) === host;
}
