/**
 * A raw protocol peer for tests that must speak the wire protocol by hand (a service
 * that never dials back, a forged or replayed token, a recorded PROOF).
 */
import { connect, type Socket } from 'node:net';
import { EventEmitter, once } from 'node:events';
import type { TestContext } from 'node:test';
import { within } from './net.js';

const LF = 0x0a;

/**
 * One connection to a relay port. Received bytes are cut into lines (a trailing CR
 * removed) for the first `maxLines` lines; everything after them is kept as raw bytes,
 * so a data connection reads its CLIENT line and then the client's stream. A control
 * connection answers PING with PONG by itself, as a live service does.
 */
export class Peer {
  readonly socket: Socket;
  /** Every line received, in order (PINGs answered automatically are left out). */
  readonly lines: string[] = [];
  #next = 0;
  #partial = Buffer.alloc(0);
  #raw: Buffer[] = [];
  readonly #all: Buffer[] = [];
  #rawLength = 0;
  #rawTaken = 0;
  #linesLeft: number;
  readonly #autoPong: boolean;
  readonly #changed = new EventEmitter();
  /** How the connection ended, once it has: FIN from the other side, a reset, or a plain close. */
  ended: 'end' | 'reset' | 'close' | undefined;
  /** Set when the other side's FIN arrived (the socket may still be writable). */
  gotFin = false;
  readonly closed: Promise<void>;

  constructor(socket: Socket, options: { maxLines?: number; autoPong?: boolean } = {}) {
    this.socket = socket;
    this.#linesLeft = options.maxLines ?? Infinity;
    this.#autoPong = options.autoPong ?? false;
    this.#changed.setMaxListeners(0);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => {
      this.gotFin = true;
      this.ended ??= 'end';
      this.#changed.emit('change');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') this.ended ??= 'reset';
      this.#changed.emit('change');
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended ??= 'close';
        this.#changed.emit('change');
        resolve();
      }),
    );
  }

  /** Connects to port on options.host (127.0.0.1); the socket is destroyed by the test's cleanup. */
  static async open(t: TestContext, port: number, options: { maxLines?: number; autoPong?: boolean; host?: string } = {}): Promise<Peer> {
    const socket = connect({ port, host: options.host ?? '127.0.0.1', allowHalfOpen: true });
    t.after(() => socket.destroy());
    const peer = new Peer(socket, options);
    await within(Promise.race([once(socket, 'connect'), peer.closed.then(() => Promise.reject(new Error(`connection to ${port} failed`)))]), 5000, `connecting to ${port}`);
    return peer;
  }

  #onData(chunk: Buffer): void {
    this.#all.push(chunk);
    let data = chunk;
    while (this.#linesLeft > 0 && data.length > 0) {
      const lf = data.indexOf(LF);
      if (lf < 0) {
        this.#partial = Buffer.concat([this.#partial, data]);
        data = Buffer.alloc(0);
        break;
      }
      const whole = Buffer.concat([this.#partial, data.subarray(0, lf)]);
      this.#partial = Buffer.alloc(0);
      data = data.subarray(lf + 1);
      const line = whole.toString('latin1').replace(/\r$/, '');
      if (this.#autoPong && line === 'PING') {
        this.socket.write('PONG\n');
        continue;
      }
      this.lines.push(line);
      this.#linesLeft--;
    }
    if (data.length > 0) {
      this.#raw.push(data);
      this.#rawLength += data.length;
    }
    this.#changed.emit('change');
  }

  /** Sends one line (LF added). Ignored when the socket can no longer write. */
  send(line: string): void {
    if (this.socket.writable) this.socket.write(`${line}\n`);
  }

  /** Resolves when check() gives a value; rejects after ms, or when the connection ended without one. */
  until<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
    return within(
      new Promise<T>((resolve, reject) => {
        const poll = (): void => {
          const value = check();
          if (value !== undefined) {
            this.#changed.off('change', poll);
            resolve(value);
          } else if (this.ended !== undefined) {
            this.#changed.off('change', poll);
            reject(new Error(`connection ended (${this.ended}) before ${what}; lines: ${JSON.stringify(this.lines)}`));
          }
        };
        this.#changed.on('change', poll);
        poll();
      }),
      ms,
      `${what}; lines so far: ${JSON.stringify(this.lines)}`,
    );
  }

  /** The next line not yet taken. */
  nextLine(ms = 5000): Promise<string> {
    return this.until(() => (this.#next < this.lines.length ? this.lines[this.#next++] : undefined), ms, 'the next line');
  }

  /** Raw bytes after the lines: resolves once at least n have arrived, with the next n. */
  async readBytes(n: number, ms = 5000): Promise<Buffer> {
    await this.until(() => (this.#rawLength - this.#rawTaken >= n ? true : undefined), ms, `${n} raw bytes`);
    const all = Buffer.concat(this.#raw);
    const taken = all.subarray(this.#rawTaken, this.#rawTaken + n);
    this.#rawTaken += n;
    return Buffer.from(taken);
  }

  /** Raw bytes received so far (after the lines), whether taken or not. */
  rawReceived(): Buffer {
    return Buffer.concat(this.#raw);
  }

  /** Every byte received, exactly as it came (PINGs included), as latin1 text. */
  text(): string {
    return Buffer.concat(this.#all).toString('latin1');
  }

  /** Resolves with how the connection ended (a FIN counts); rejects after ms. */
  endsWithin(ms: number): Promise<'end' | 'reset' | 'close'> {
    return this.until(() => this.ended, ms, 'the connection to end').catch((err: Error) => {
      if (this.ended !== undefined) return this.ended;
      throw err;
    });
  }
}

/** The fields of an OK line. */
export interface Registration {
  host: string;
  publicPort: number;
  dataPort: number;
  heartbeatMs: number;
  resume: string;
}

export function parseOk(line: string): Registration {
  const match = /^OK (.+):(\d+) data=(\d+) heartbeat=(\d+) resume=([0-9a-f]{32})/.exec(line);
  if (match === null) throw new Error(`not an OK line: ${line}`);
  return { host: match[1]!, publicPort: Number(match[2]), dataPort: Number(match[3]), heartbeatMs: Number(match[4]), resume: match[5]! };
}

/** A service speaking the protocol by hand: HELLO (and PROOF when the relay asks), then OK. */
export async function registerRaw(
  t: TestContext,
  port: number,
  options: { proof?: (nonce: string) => string; hello?: string } = {},
): Promise<{ control: Peer; registration: Registration; nonce: string | undefined }> {
  const control = await Peer.open(t, port, { autoPong: true });
  control.send(options.hello ?? 'HELLO 1 host=127.0.0.1');
  let line = await control.nextLine();
  let nonce: string | undefined;
  const auth = /^AUTH ([0-9a-f]{64})$/.exec(line);
  if (auth !== null) {
    nonce = auth[1]!;
    if (options.proof === undefined) throw new Error('the relay asked for a PROOF and the test gave none');
    control.send(`PROOF ${options.proof(nonce)}`);
    line = await control.nextLine();
  }
  return { control, registration: parseOk(line), nonce };
}

/** The token of the next CONNECT line on a raw control connection. */
export async function nextConnect(control: Peer, ms = 5000): Promise<{ token: string; clientAddress: string; clientPort: number }> {
  const line = await control.nextLine(ms);
  const match = /^CONNECT ([0-9a-f]+) (\S+) (\d+)$/.exec(line);
  if (match === null) throw new Error(`expected CONNECT, got: ${line}`);
  return { token: match[1]!, clientAddress: match[2]!, clientPort: Number(match[3]) };
}

/** A data connection presenting `first` (DATA TOKEN); its first line is the relay's answer. */
export async function dialData(t: TestContext, dataPort: number, first: string): Promise<{ peer: Peer; reply: string }> {
  const peer = await Peer.open(t, dataPort, { maxLines: 1 });
  peer.send(first);
  const reply = await peer.nextLine();
  return { peer, reply };
}

/** Random lowercase hex of `digits` digits. */
export function randomHex(digits: number): string {
  let text = '';
  while (text.length < digits)
    text += Math.floor(Math.random() * 0x100000000)
      .toString(16)
      .padStart(8, '0');
  return text.slice(0, digits);
}
