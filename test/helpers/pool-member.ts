/**
 * A pool member speaking the wire protocol by hand (docs/protocol.md §17), for testing
 * the relay's side of pools before, and apart from, the library's: it registers with
 * `pool=KEY`, answers PING and PROBE, and serves each CONNECT as its mode says.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import { computeProof } from '../../src/protocol/auth.js';
import { deferred, within } from './net.js';
import { parseOk, type Registration } from './protocol.js';

/**
 * What the member does with a CONNECT: `serve` dials back and answers the client with
 * its name, then echoes; `decline` sends DECLINE; `ignore` says nothing (it never dials back).
 */
export type MemberMode = 'serve' | 'decline' | 'ignore';

export interface MemberOptions {
  /** The relay node's address (default 127.0.0.1). */
  host?: string;
  feat?: string;
  tenant?: string;
  secret?: string;
  /** Answer PROBE (default true). */
  probes?: boolean;
  /** A HELLO of the test's own instead of the member's. */
  hello?: string;
}

export class RawMember {
  readonly name: string;
  readonly control: Socket;
  mode: MemberMode = 'serve';
  answerProbes: boolean;
  /** CONNECT lines received, and clients served (dialed back for). */
  connects = 0;
  served = 0;
  readonly lines: string[] = [];
  /** Tokens of CONNECTs not dialed back for (ignored or declined), oldest first. */
  readonly unanswered: string[] = [];
  registration: Registration | undefined;
  /** The client ports of the CLIENT lines it received: the clients spliced to it. */
  readonly clientPorts = new Set<number>();
  readonly #data = new Set<Socket>();
  readonly #t: TestContext;
  readonly #first = deferred<string>();
  #partial = '';
  #dataPort = 0;
  readonly #host: string;

  private constructor(t: TestContext, name: string, control: Socket, options: MemberOptions) {
    this.#t = t;
    this.name = name;
    this.control = control;
    this.answerProbes = options.probes ?? true;
    this.#host = options.host ?? '127.0.0.1';
    control.setEncoding('latin1');
    control.on('data', (text: string) => this.#onData(text, options));
    control.on('error', () => undefined);
    control.on('close', () => this.#first.resolve('(closed)'));
  }

  /** Opens a control connection and sends HELLO; `registered()` waits for the answer. */
  static async open(t: TestContext, relayPort: number, key: string, name: string, options: MemberOptions = {}): Promise<RawMember> {
    const control = connect({ port: relayPort, host: options.host ?? '127.0.0.1', allowHalfOpen: true });
    t.after(() => control.destroy());
    await within(once(control, 'connect'), 5000, `${name} connecting`);
    const member = new RawMember(t, name, control, options);
    const tenant = options.tenant === undefined ? '' : ` tenant=${options.tenant}`;
    member.send(options.hello ?? `HELLO 1 host=127.0.0.1 feat=${options.feat ?? 'leave,probe,pool'} pool=${key}${tenant}`);
    return member;
  }

  /** Joins the pool: resolves with the OK, or throws with the line the relay sent instead. */
  static async join(t: TestContext, relayPort: number, key: string, name: string, options: MemberOptions = {}): Promise<RawMember> {
    const member = await RawMember.open(t, relayPort, key, name, options);
    const line = await member.firstLine();
    if (!line.startsWith('OK ')) throw new Error(`${name} not registered: ${line}`);
    return member;
  }

  /** The relay's first answer to HELLO after any AUTH (OK or ERR), or "(closed)". */
  firstLine(): Promise<string> {
    return within(this.#first.promise, 5000, `${this.name}'s answer to HELLO`);
  }

  get publicPort(): number {
    if (this.registration === undefined) throw new Error(`${this.name} is not registered`);
    return this.registration.publicPort;
  }

  send(line: string): void {
    if (this.control.writable) this.control.write(`${line}\n`);
  }

  #onData(text: string, options: MemberOptions): void {
    this.#partial += text;
    let lf: number;
    while ((lf = this.#partial.indexOf('\n')) >= 0) {
      const line = this.#partial.slice(0, lf);
      this.#partial = this.#partial.slice(lf + 1);
      this.#onLine(line, options);
    }
  }

  #onLine(line: string, options: MemberOptions): void {
    const [verb, arg] = line.split(' ');
    if (verb === 'PING') return this.send('PONG');
    this.lines.push(line);
    if (verb === 'AUTH') return this.send(`PROOF ${computeProof(options.secret ?? '', arg!)}`);
    if (verb === 'OK') {
      this.registration = parseOk(line);
      this.#dataPort = this.registration.dataPort;
    }
    if (verb === 'OK' || verb === 'ERR') this.#first.resolve(line);
    if (verb === 'PROBE' && this.answerProbes) this.#dialBack(arg!, false);
    if (verb !== 'CONNECT') return;
    this.connects++;
    if (this.mode === 'serve') return this.#dialBack(arg!, true);
    this.unanswered.push(arg!);
    if (this.mode === 'decline') this.send(`DECLINE ${arg}`);
  }

  /** Dials back for a token: a client's (its name, then an echo of what the client sends) or a probe's. */
  #dialBack(token: string, client: boolean): void {
    const data = connect({ port: this.#dataPort, host: this.#host, allowHalfOpen: true });
    this.#t.after(() => data.destroy());
    this.#data.add(data);
    data.on('close', () => this.#data.delete(data));
    data.on('error', () => undefined);
    data.write(`DATA ${token}\n`);
    if (!client) {
      data.resume();
      data.on('end', () => data.end());
      return;
    }
    let head = Buffer.alloc(0);
    const onHead = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const lf = head.indexOf(0x0a);
      if (lf < 0) return;
      data.off('data', onHead);
      const line = head.subarray(0, lf).toString();
      if (!line.startsWith('CLIENT ')) return void data.destroy();
      this.served++;
      this.clientPorts.add(Number(line.split(' ')[2]));
      data.write(`${this.name}\n`);
      const rest = head.subarray(lf + 1);
      if (rest.length > 0) data.write(rest);
      data.pipe(data);
    };
    data.on('data', onHead);
  }

  /** As if its process were killed: every connection of it closed at once, nothing more answered. */
  kill(): void {
    this.mode = 'ignore';
    this.answerProbes = false;
    this.control.destroy();
    for (const data of this.#data) data.destroy();
  }

  /** The control connection's FIN, for a member that stops without LEAVE. */
  end(): void {
    this.control.end();
  }
}

/** A public client: connects, sends `say`, and resolves with the member's name and what came back. */
export async function askPool(t: TestContext, port: number, say = 'hello\n', ms = 5000, host = '127.0.0.1'): Promise<{ name: string; echoed: string }> {
  const client = connect({ port, host, allowHalfOpen: true });
  t.after(() => client.destroy());
  client.on('error', () => undefined);
  client.write(say);
  client.setEncoding('latin1');
  let got = '';
  await within(
    new Promise<void>((resolve, reject) => {
      client.on('data', (text: string) => {
        got += text;
        const lf = got.indexOf('\n');
        if (lf >= 0 && got.length - lf - 1 >= say.length) resolve();
      });
      client.on('close', () => reject(new Error(`client closed after ${JSON.stringify(got)}`)));
    }),
    ms,
    `an answer from the pool on port ${port} (got ${JSON.stringify(got)})`,
  );
  client.end();
  const lf = got.indexOf('\n');
  return { name: got.slice(0, lf), echoed: got.slice(lf + 1) };
}
