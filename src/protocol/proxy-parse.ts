import { isIPv4, isIPv6 } from 'node:net';
import { parsePort } from './addresses.js';

/**
 * Reading a PROXY protocol header (HAProxy's specification, versions 1 and 2) that a
 * load balancer puts in front of a connection: strict and bounded, fed the bytes read
 * so far, so a stranger cannot make it buffer more than a header's worth.
 */

/** Where the connection really came from, and which address it reached. */
export interface ProxiedEnds {
  clientAddress: string;
  clientPort: number;
  serverAddress: string;
  serverPort: number;
}

export type ProxyParse =
  /** Not a whole header yet; feed more bytes. */
  | { state: 'more' }
  /**
   * A header of `length` bytes. `ends` is undefined for a connection the balancer made
   * itself (v2 LOCAL, its health checks) or could not describe (v1 UNKNOWN, v2 UNSPEC):
   * the connection's own addresses stand.
   */
  | { state: 'done'; length: number; ends: ProxiedEnds | undefined }
  | { state: 'bad'; reason: string };

/** The longest v1 header, CRLF included (the specification's bound). */
export const MAX_V1_BYTES = 107;
/** The longest v2 address block and TLVs taken (the specification asks for at least 536 bytes of room). */
export const MAX_V2_BODY = 2048;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_HEAD = 16;

const more = { state: 'more' } as const;
const bad = (reason: string): ProxyParse => ({ state: 'bad', reason });

/** Reads the header at the start of `bytes` (everything read so far). */
export function parseProxyHeader(bytes: Buffer): ProxyParse {
  if (startsLike(bytes, V2_SIGNATURE)) return bytes.length < V2_SIGNATURE.length ? more : parseV2(bytes);
  if (startsLike(bytes, V1_PREFIX)) return bytes.length < V1_PREFIX.length ? more : parseV1(bytes);
  return bad('the connection does not begin with a PROXY header');
}

/** Whether `bytes` and `prefix` agree as far as both go. */
function startsLike(bytes: Buffer, prefix: Buffer): boolean {
  const n = Math.min(bytes.length, prefix.length);
  return bytes.subarray(0, n).equals(prefix.subarray(0, n));
}

function parseV1(bytes: Buffer): ProxyParse {
  const lf = bytes.indexOf(0x0a);
  if (lf < 0) return bytes.length >= MAX_V1_BYTES ? bad(`a PROXY v1 line longer than ${MAX_V1_BYTES} bytes`) : more;
  if (lf + 1 > MAX_V1_BYTES) return bad(`a PROXY v1 line longer than ${MAX_V1_BYTES} bytes`);
  if (bytes[lf - 1] !== 0x0d) return bad('a PROXY v1 line must end in CRLF');
  const line = bytes.subarray(0, lf - 1).toString('latin1');
  const words = line.split(' ');
  const length = lf + 1;
  // UNKNOWN may be followed by anything; the receiver ignores it.
  if (words[1] === 'UNKNOWN') return { state: 'done', length, ends: undefined };
  if (words.length !== 6 || (words[1] !== 'TCP4' && words[1] !== 'TCP6')) return bad('a PROXY v1 line must be PROXY TCP4|TCP6 SRC DST SPORT DPORT, or PROXY UNKNOWN');
  const [, family, clientAddress = '', serverAddress = '', sport, dport] = words;
  const isFamily = family === 'TCP4' ? isIPv4 : isIPv6;
  if (!isFamily(clientAddress) || !isFamily(serverAddress) || clientAddress.includes('%')) return bad(`a PROXY v1 line with addresses that are not ${family}`);
  const clientPort = parsePort(sport, true);
  const serverPort = parsePort(dport, true);
  if (clientPort === undefined || serverPort === undefined) return bad('a PROXY v1 line with ports that are not 0-65535');
  return { state: 'done', length, ends: { clientAddress, clientPort, serverAddress, serverPort } };
}

function parseV2(bytes: Buffer): ProxyParse {
  if (bytes.length < V2_HEAD) return more;
  const versionCommand = bytes[12]!;
  const familyProtocol = bytes[13]!;
  const bodyLength = bytes.readUInt16BE(14);
  if (versionCommand >> 4 !== 2) return bad(`a PROXY v2 header of version ${versionCommand >> 4}`);
  const command = versionCommand & 0x0f;
  if (command > 1) return bad(`a PROXY v2 header with command ${command} (only LOCAL and PROXY exist)`);
  if (bodyLength > MAX_V2_BODY) return bad(`a PROXY v2 header of ${bodyLength} bytes after its head (at most ${MAX_V2_BODY} taken)`);
  const length = V2_HEAD + bodyLength;
  if (bytes.length < length) return more;
  const body = bytes.subarray(V2_HEAD, length);
  // LOCAL: the balancer's own connection (a health check); UNSPEC: it could not say.
  if (command === 0 || familyProtocol === 0x00) return { state: 'done', length, ends: undefined };
  if (familyProtocol === 0x11) {
    if (body.length < 12) return bad('a PROXY v2 TCP4 header too short for its addresses');
    const ends = { clientAddress: ipv4Text(body, 0), serverAddress: ipv4Text(body, 4), clientPort: body.readUInt16BE(8), serverPort: body.readUInt16BE(10) };
    return { state: 'done', length, ends };
  }
  if (familyProtocol === 0x21) {
    if (body.length < 36) return bad('a PROXY v2 TCP6 header too short for its addresses');
    const ends = { clientAddress: ipv6Text(body, 0), serverAddress: ipv6Text(body, 16), clientPort: body.readUInt16BE(32), serverPort: body.readUInt16BE(34) };
    return { state: 'done', length, ends };
  }
  return bad(`a PROXY v2 header for family/protocol 0x${familyProtocol.toString(16).padStart(2, '0')} (only TCP over IPv4 or IPv6 is relayed)`);
}

function ipv4Text(body: Buffer, at: number): string {
  return [...body.subarray(at, at + 4)].join('.');
}

function ipv6Text(body: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(body.readUInt16BE(at + i * 2).toString(16));
  const text = groups.join(':');
  // An IPv4 client through a dual-stack balancer: the plain IPv4 address, as sockets do.
  if (text.startsWith('0:0:0:0:0:ffff:')) return `::ffff:${body[at + 12]}.${body[at + 13]}.${body[at + 14]}.${body[at + 15]}`;
  return text.replace(/(^|:)0(:0)+(:|$)/, '::');
}
