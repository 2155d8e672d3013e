/**
 * The first bytes of a connection to a names port, read to learn which host the client
 * wants: a TLS ClientHello's server_name (SNI) or an HTTP/1.x request's Host header
 * (docs/protocol.md §18). Pure: fed everything received so far, it says whether that
 * names a host yet. TLS is parsed only far enough to find the name, never terminated.
 */

/** Most bytes a client may send before its name is known. */
export const MAX_PRELUDE_BYTES = 16 * 1024;

/**
 * What the bytes so far say: not enough yet (`more`), a host (undefined when the
 * ClientHello has no SNI or the request no Host header), or bytes that are neither TLS
 * nor HTTP/1.x (`bad`).
 */
export type Prelude = { kind: 'more' } | { kind: 'tls' | 'http'; host: string | undefined } | { kind: 'bad'; reason: string };

const MORE: Prelude = { kind: 'more' };
const TLS_HANDSHAKE = 0x16;
const CLIENT_HELLO = 1;
const SERVER_NAME_EXTENSION = 0;
const HOST_NAME = 0;
/** A TLS record's payload is at most 2^14 bytes (RFC 8446 §5.1). */
const MAX_RECORD = 16384;

/** The host the bytes received so far name, if they name one yet. */
export function readPrelude(bytes: Buffer): Prelude {
  if (bytes.length === 0) return MORE;
  if (bytes[0] === TLS_HANDSHAKE) return tlsPrelude(bytes);
  if (bytes[0]! >= 0x41 && bytes[0]! <= 0x5a) return httpPrelude(bytes.toString('latin1'));
  return { kind: 'bad', reason: 'neither a TLS ClientHello nor an HTTP request' };
}

/** A fixed TLS alert record: fatal (2), unrecognized_name (112). */
export const UNRECOGNIZED_NAME_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]);

/** The HTTP answer for a host no service has: 404 with one line of text. */
export function notFoundResponse(host: string | undefined): string {
  const body = host === undefined ? 'no host named in the request\n' : `no service is registered for ${host}\n`;
  return `HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

class Truncated extends Error {}

/** Reads big-endian fields from a buffer, throwing Truncated past its end. */
class Cursor {
  readonly #bytes: Buffer;
  #at = 0;

  constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  get left(): number {
    return this.#bytes.length - this.#at;
  }

  uint(size: 1 | 2 | 3): number {
    if (this.left < size) throw new Truncated();
    const value = this.#bytes.readUIntBE(this.#at, size);
    this.#at += size;
    return value;
  }

  take(length: number): Buffer {
    if (this.left < length) throw new Truncated();
    const slice = this.#bytes.subarray(this.#at, this.#at + length);
    this.#at += length;
    return slice;
  }

  /** A field prefixed by its length in `size` bytes. */
  vector(size: 1 | 2 | 3): Buffer {
    return this.take(this.uint(size));
  }
}

/** The handshake layer gathered from as many records as it spans (a ClientHello may be split over several). */
function tlsPrelude(bytes: Buffer): Prelude {
  const fragments: Buffer[] = [];
  let gathered = 0;
  let needed: number | undefined;
  let at = 0;
  while (needed === undefined || gathered < needed) {
    if (bytes.length < at + 5) return MORE;
    if (bytes[at] !== TLS_HANDSHAKE) return { kind: 'bad', reason: 'a TLS record other than a handshake before the ClientHello ended' };
    const length = bytes.readUInt16BE(at + 3);
    if (bytes[at + 1] !== 3 || length === 0 || length > MAX_RECORD) return { kind: 'bad', reason: 'not a TLS record' };
    if (bytes.length < at + 5 + length) return MORE;
    fragments.push(bytes.subarray(at + 5, at + 5 + length));
    gathered += length;
    at += 5 + length;
    if (needed === undefined && gathered >= 4) {
      const head = Buffer.concat(fragments);
      if (head[0] !== CLIENT_HELLO) return { kind: 'bad', reason: 'the first TLS handshake message is not a ClientHello' };
      needed = 4 + head.readUIntBE(1, 3);
    }
  }
  try {
    return { kind: 'tls', host: serverName(Buffer.concat(fragments).subarray(4, needed)) };
  } catch (err) {
    if (err instanceof Truncated) return { kind: 'bad', reason: 'a malformed ClientHello' };
    throw err;
  }
}

/** The SNI host_name of a ClientHello's body (RFC 8446 §4.1.2, RFC 6066 §3), if it has one. */
function serverName(body: Buffer): string | undefined {
  const hello = new Cursor(body);
  hello.take(2 + 32); // legacy_version, random
  hello.vector(1); // legacy_session_id
  hello.vector(2); // cipher_suites
  hello.vector(1); // legacy_compression_methods
  if (hello.left === 0) return undefined; // no extensions at all
  const extensions = new Cursor(hello.vector(2));
  while (extensions.left > 0) {
    const type = extensions.uint(2);
    const data = extensions.vector(2);
    if (type !== SERVER_NAME_EXTENSION) continue;
    const names = new Cursor(new Cursor(data).vector(2));
    while (names.left > 0) {
      const nameType = names.uint(1);
      const name = names.vector(2);
      if (nameType === HOST_NAME) return name.toString('latin1');
    }
  }
  return undefined;
}

const REQUEST_LINE = /^[A-Z]{1,20} [\x21-\x7e]+ HTTP\/1\.\d$/;
/** A request line still arriving: a method, perhaps a target and part of the version. */
const PARTIAL_REQUEST_LINE = /^[A-Z]{1,20}(?: [\x21-\x7e]*(?: [\x21-\x7e]*)?)?\r?$/;

/** The Host header of an HTTP/1.x request, once its line is complete (the headers before it may be any). */
function httpPrelude(text: string): Prelude {
  let end = text.indexOf('\n');
  if (end === -1) return PARTIAL_REQUEST_LINE.test(text) ? MORE : { kind: 'bad', reason: 'not an HTTP/1.x request line' };
  if (!REQUEST_LINE.test(text.slice(0, end).replace(/\r$/, ''))) return { kind: 'bad', reason: 'not an HTTP/1.x request line' };
  for (let start = end + 1; ; start = end + 1) {
    end = text.indexOf('\n', start);
    if (end === -1) return MORE;
    const header = text.slice(start, end).replace(/\r$/, '');
    if (header === '') return { kind: 'http', host: undefined };
    const colon = header.indexOf(':');
    if (colon > 0 && header.slice(0, colon).toLowerCase() === 'host') return { kind: 'http', host: withoutPort(header.slice(colon + 1).trim()) };
  }
}

/** A Host header's host: `example.com:8080` is `example.com`; an IPv6 literal keeps its brackets. */
function withoutPort(value: string): string {
  if (value.startsWith('[')) return value.slice(0, value.indexOf(']') + 1);
  return value.replace(/:\d*$/, '');
}
