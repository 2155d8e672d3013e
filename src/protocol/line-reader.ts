import { MAX_LINE_BYTES, type ErrorCode } from './messages.js';

export type LineResult = { ok: true; line: string } | { ok: false; code: ErrorCode; reason: string };

const LF = 0x0a;
/** Every reader starts (and restarts) with this one, never written to: no allocation per connection. */
const EMPTY = Buffer.alloc(0);
const CR = 0x0d;

/**
 * Cuts a byte stream into protocol lines without ever holding more than one line
 * plus one chunk. It is fed bytes with push() and knows nothing of sockets, so a
 * line split across any number of chunks reads the same as one chunk.
 *
 * A peer that sends a byte outside printable ASCII, or more than maxBytes without
 * a LF, is refused as soon as the byte arrives, not when a LF finally comes: that is
 * what turns a TLS ClientHello or a megabyte of garbage into an immediate refusal.
 */
export class LineReader {
  readonly #maxBytes: number;
  #buffer: Buffer = EMPTY;
  // How far #buffer has already been checked, so a drip-fed line costs O(n) in total.
  #checked = 0;
  #failed: LineResult | undefined;

  constructor(maxBytes = MAX_LINE_BYTES) {
    this.#maxBytes = maxBytes;
  }

  push(chunk: Buffer): void {
    if (this.#failed) return; // a refused peer's further bytes are not kept
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
  }

  /** The next complete line (LF and a CR before it removed), or undefined until one arrives. */
  next(): LineResult | undefined {
    if (this.#failed) return this.#failed;
    const buffer = this.#buffer;
    const limit = Math.min(buffer.length, this.#maxBytes);
    for (let i = this.#checked; i < limit; i++) {
      const byte = buffer[i]!;
      if (byte === LF) {
        const end = i > 0 && buffer[i - 1] === CR ? i - 1 : i;
        const line = buffer.toString('latin1', 0, end);
        this.#buffer = buffer.subarray(i + 1);
        this.#checked = 0;
        return { ok: true, line };
      }
      if (byte === CR && i + 1 === buffer.length) {
        // Whether this CR ends the line depends on a byte not here yet.
        this.#checked = i;
        return this.#tooLongOrWait(buffer);
      }
      if ((byte < 0x20 || byte > 0x7e) && !(byte === CR && buffer[i + 1] === LF)) {
        return this.#fail('binary', `byte 0x${byte.toString(16).padStart(2, '0')} where a protocol line was expected`);
      }
    }
    this.#checked = limit;
    return this.#tooLongOrWait(buffer);
  }

  #tooLongOrWait(buffer: Buffer): LineResult | undefined {
    if (buffer.length >= this.#maxBytes) {
      return this.#fail('too-long', `no line end within ${this.#maxBytes} bytes`);
    }
    return undefined;
  }

  /** The bytes after the last line taken: on a data connection, the first bytes of the stream. */
  takeRest(): Buffer {
    const rest = this.#buffer;
    this.#buffer = EMPTY;
    this.#checked = 0;
    return rest;
  }

  #fail(code: ErrorCode, reason: string): LineResult {
    this.#failed = { ok: false, code, reason };
    this.#buffer = EMPTY;
    return this.#failed;
  }
}
