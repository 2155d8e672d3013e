/**
 * A relay played by the test, line by line, on real sockets: for the service side of a
 * protocol feature the real relay does not have yet, or for exactly what a relay says
 * and when. Two listeners on 127.0.0.1: the control port (every connection a Peer that
 * answers PING with PONG, as a relay does) and a separate data port (a Peer that cuts
 * its first line, the DATA, from the raw bytes after it).
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import { Peer } from './protocol.js';
import { within } from './net.js';

/** A queue of connections a test takes one by one, waiting with a bound for the next. */
class Arrivals {
  readonly #peers: Peer[] = [];
  readonly #waiters: ((peer: Peer) => void)[] = [];
  /** Every connection so far, taken or not. */
  readonly all: Peer[] = [];

  push(peer: Peer): void {
    this.all.push(peer);
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter(peer);
    else this.#peers.push(peer);
  }

  next(ms: number, what: string): Promise<Peer> {
    const peer = this.#peers.shift();
    if (peer !== undefined) return Promise.resolve(peer);
    return within(new Promise<Peer>((resolve) => this.#waiters.push(resolve)), ms, what);
  }
}

export class ScriptedRelay {
  readonly controlPort: number;
  readonly dataPort: number;
  readonly controls = new Arrivals();
  readonly datas = new Arrivals();

  private constructor(controlPort: number, dataPort: number) {
    this.controlPort = controlPort;
    this.dataPort = dataPort;
  }

  /** Listens on two free ports; everything is closed by the test's cleanup. */
  static async start(t: TestContext): Promise<ScriptedRelay> {
    const sockets = new Set<Socket>();
    const listen = async (onPeer: (socket: Socket) => void): Promise<Server> => {
      const server = createServer({ allowHalfOpen: true }, (socket) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
        onPeer(socket);
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      t.after(() => {
        for (const socket of sockets) socket.destroy();
        server.close();
      });
      return server;
    };
    let relay: ScriptedRelay | undefined;
    const pending: { kind: 'control' | 'data'; socket: Socket }[] = [];
    const arrive = (kind: 'control' | 'data', socket: Socket): void => {
      if (relay === undefined) pending.push({ kind, socket });
      else relay.#arrive(kind, socket);
    };
    const control = await listen((socket) => arrive('control', socket));
    const data = await listen((socket) => arrive('data', socket));
    relay = new ScriptedRelay((control.address() as AddressInfo).port, (data.address() as AddressInfo).port);
    for (const { kind, socket } of pending) relay.#arrive(kind, socket);
    return relay;
  }

  #arrive(kind: 'control' | 'data', socket: Socket): void {
    if (kind === 'control') this.controls.push(new Peer(socket, { autoPong: true }));
    else this.datas.push(new Peer(socket, { maxLines: 1 }));
  }

  /** The next control connection, once its HELLO has arrived: the peer and the HELLO line. */
  async nextControl(ms = 10_000): Promise<{ peer: Peer; hello: string }> {
    const peer = await this.controls.next(ms, 'a control connection');
    return { peer, hello: await peer.nextLine(ms) };
  }

  nextData(ms = 10_000): Promise<Peer> {
    return this.datas.next(ms, 'a data connection');
  }

  /** The OK line of a registration; `features` as the relay lists them (no feat= when undefined). */
  ok(resume: string, features: string | undefined, port = 40_000): string {
    return `OK 127.0.0.1:${port} data=${this.dataPort} heartbeat=60000 resume=${resume}${features === undefined ? '' : ` feat=${features}`}`;
  }
}

/** Every feature of this version, pool included, as a pool-aware relay answers them. */
export const ALL_FEATURES = 'rejoin,leave,superseded,probe,fleet,nodes,pool';
/** What a relay older than pools answers the same HELLO. */
export const PRE_POOL_FEATURES = 'rejoin,leave,superseded,probe,fleet,nodes';
