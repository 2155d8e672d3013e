/** Addresses as text: `host:port` both ways. Pure, no sockets, so each spelling can be unit-tested. */

const PORT = /^[1-9][0-9]{0,4}$/;
// Host names, IPv4 and IPv6 literals (brackets optional); the relay never resolves it.
const HOST = /^(\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Fa-f:.]{2,45}|[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}))$/;

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
