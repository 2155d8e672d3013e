import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Logger } from '../log.js';
import { adoptHandedOver, sendSocket } from '../net/hand-over.js';
import type { FromWorker, ListeningPorts, ToWorker } from './messages.js';
import type { UpgradeSide } from '../relay/relay.js';
import { resetSocket } from '../net/splice.js';

type Start = Extract<ToWorker, { kind: 'start' }>;

/** How long a second signal waits for the resets (and their log lines) before exiting. */
const STOP_NOW_SETTLE_MS = 1_000;

/**
 * The worker's side of the master link: waits for the master's go, reports the ports it
 * listens on, and turns the master's messages into calls on the relay (upgrade steps,
 * stop, sockets handed over).
 */
export class MasterLink {
  #relay: UpgradeSide | undefined;
  #metrics: Server | undefined;
  #log: Logger | undefined;
  #onStart: ((start: Start) => void) | undefined;
  #stopping = false;
  #retiring = false;
  /** The worker this one replaced still drains: a token unknown here may be its. */
  #predecessor = false;

  constructor() {
    // A terminal's Ctrl-C reaches the whole process group; the master alone decides what
    // a signal means, so one Ctrl-C is not taken as two.
    process.on('SIGINT', () => {});
    process.on('SIGTERM', () => {});
    process.on('SIGUSR2', () => this.#log?.warn('SIGUSR2 ignored: send it to the master process (the pid in --pid-file)'));
    // A terminal hangup reaches the whole group: the master alone passes SIGHUP on, as 'reload'.
    process.on('SIGHUP', () => {});
    process.on('message', (msg: ToWorker, handle: unknown) => this.#onMessage(msg, handle as Socket | undefined));
  }

  /** Tells the master this worker parsed its command line; resolves with its go. */
  waitForStart(pidFile: string | undefined, log: Logger, format: 'json' | 'pretty'): Promise<Start> {
    this.#log = log;
    const started = new Promise<Start>((resolve) => (this.#onStart = resolve));
    tell({ kind: 'waiting', pidFile, log: { level: log.level, format } });
    return started;
  }

  /** The relay is listening: from now on the master may upgrade or stop it. */
  serve(relay: UpgradeSide, metrics: Server | undefined, predecessor: boolean): void {
    this.#relay = relay;
    this.#metrics = metrics;
    this.#predecessor = predecessor;
    relay.passDialBack = (socket, token, head) => this.#passDialBack(socket, token, head);
    const address = metrics?.address();
    const ports: ListeningPorts = { control: relay.controlPort, data: relay.dataPort };
    if (typeof address === 'object' && address !== null) ports.metrics = address.port;
    tell({ kind: 'ready', ports });
  }

  #onMessage(msg: ToWorker, socket: Socket | undefined): void {
    const relay = this.#relay;
    if (msg.kind === 'start') return this.#onStart?.(msg);
    if (msg.kind === 'stop') return this.#stop(msg.signal);
    if (msg.kind === 'stop-now') {
      this.#log?.warn({ signal: msg.signal }, 'second signal: resetting open tunnels and exiting now');
      // A cut tunnel must end in a reset, never a FIN after part of a transfer.
      const cut = relay?.cutTunnels() ?? Promise.resolve();
      void Promise.race([cut, new Promise((resolve) => setTimeout(resolve, STOP_NOW_SETTLE_MS).unref())]).then(() => process.exit(1));
      return;
    }
    if (socket !== undefined && (msg.kind === 'held-client' || msg.kind === 'dial-back')) {
      // Before anything else, in this tick: see adoptHandedOver.
      adoptHandedOver(socket, msg.kind === 'held-client' ? Buffer.from(msg.head, 'base64') : Buffer.alloc(0));
      if (relay === undefined) return void resetSocket(socket); // a public client or dial-back nobody will serve
      if (msg.kind === 'held-client') relay.adoptHeldClient(msg.port, socket);
      else relay.acceptDialBack(socket, msg.token, Buffer.from(msg.head, 'base64'));
      return;
    }
    if (relay === undefined) return;
    if (msg.kind === 'prepare') void this.#prepare(relay);
    else if (msg.kind === 'abort') {
      relay.resumeStateWrites();
      this.#log?.warn('upgrade called off: this worker keeps serving');
    } else if (msg.kind === 'retire') void this.#retire(relay);
    else if (msg.kind === 'leases') void relay.installLeases(msg.leases);
    else if (msg.kind === 'predecessor-gone') this.#predecessor = false;
    else if (msg.kind === 'reload' && !this.#retiring && !this.#stopping) relay.reload();
  }

  async #prepare(relay: UpgradeSide): Promise<void> {
    await relay.pauseStateWrites();
    tell({ kind: 'prepared', leases: relay.leaseSnapshot() });
  }

  async #retire(relay: UpgradeSide): Promise<void> {
    this.#retiring = true;
    this.#log?.info('upgrade: a new worker is serving; this one stops accepting and drains');
    // Registrations since `prepare` are not in the snapshot the successor started with.
    tell({ kind: 'leases', leases: relay.leaseSnapshot() });
    this.#metrics?.close();
    await relay.retire(handOff);
    process.exit(0);
  }

  #stop(signal: string): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#log?.info({ signal }, 'stopping (send the signal again to exit at once)');
    // A retiring worker is already draining; it exits when that is done.
    if (this.#retiring) return;
    const relay = this.#relay;
    if (relay === undefined) process.exit(0);
    this.#metrics?.close();
    relay.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        this.#log?.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  }

  #passDialBack(socket: Socket, token: string, head: Buffer): boolean {
    // A TLS session cannot cross processes; without a predecessor nobody else knows it.
    if (!this.#predecessor || socket instanceof TLSSocket) return false;
    sendSocket(socket, (more, handle) => tell({ kind: 'dial-back', token, head: Buffer.concat([head, more]).toString('base64') }, handle));
    return true;
  }
}

function handOff(port: number, client: Socket): void {
  sendSocket(client, (head, handle) => tell({ kind: 'held-client', port, head: head.toString('base64') }, handle));
}

function tell(msg: FromWorker, socket?: Socket): void {
  if (process.connected) process.send?.(msg, socket);
}
