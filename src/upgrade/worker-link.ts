import cluster from 'node:cluster';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Place } from '../leases/lease-store.js';
import type { Logger } from '../log.js';
import { adoptHandedOver, sendSocket } from '../net/hand-over.js';
import type { FromWorker, ListeningPorts, ToWorker } from './messages.js';
import type { UpgradeSide } from '../relay/upgrade-side.js';
import { proxiedEndsOf } from '../relay/client-address.js';
import { resetSocket } from '../net/splice.js';

type Start = Extract<ToWorker, { kind: 'start' }>;
type Workers = Pick<Extract<FromWorker, { kind: 'waiting' }>, 'workers' | 'graceMs' | 'stateFile'>;

/** How long a second signal waits for the resets (and their log lines) before exiting. */
const STOP_NOW_SETTLE_MS = 1_000;
/** How long a retiring worker waits for the sockets it handed over to leave (one IPC round trip each). */
const HAND_OVER_SETTLE_MS = 5_000;

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
  #start: Start | undefined;
  #stopping = false;
  /** Leases from the predecessor being installed, in the order they came: held clients wait for them. */
  #installing: Promise<void> = Promise.resolve();
  #retiring = false;
  /** The worker this one replaced still drains: a token unknown here may be its. */
  #predecessor = false;
  /** The master died (kill -9, a crash): nobody else will stop this worker or pass signals on. */
  #orphaned = false;

  constructor() {
    // A terminal's Ctrl-C reaches the whole process group; the master alone decides what
    // a signal means, so one Ctrl-C is not taken as two. Without a master, the signal is
    // meant for this worker, and ends it at once (as a second signal to the master would).
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => this.#orphaned && this.#stopNow(signal));
    cluster.worker?.on('disconnect', () => this.#masterGone());
    process.on('SIGUSR2', () => this.#log?.warn('SIGUSR2 ignored: send it to the master process (the pid in --pid-file)'));
    // A terminal hangup reaches the whole group: the master alone passes SIGHUP on, as 'reload'.
    process.on('SIGHUP', () => {});
    process.on('message', (msg: ToWorker, handle: unknown) => this.#onMessage(msg, handle as Socket | undefined));
  }

  /**
   * Tells the master this worker parsed its command line (`workers`: how many it asks
   * for, with the leases' grace and state file the master needs for several); resolves with its go.
   */
  waitForStart(pidFile: string | undefined, log: Logger, format: 'json' | 'pretty', workers: Workers): Promise<Start> {
    this.#log = log;
    const started = new Promise<Start>((resolve) => (this.#onStart = resolve)).then((start) => (this.#start = start));
    tell({ kind: 'waiting', pidFile, log: { level: log.level, format }, ...workers });
    return started;
  }

  /** The relay is listening: from now on the master may upgrade or stop it. */
  serve(relay: UpgradeSide, metrics: Server | undefined, predecessor: boolean): void {
    this.#relay = relay;
    this.#metrics = metrics;
    this.#predecessor = predecessor;
    // Uptime counts from the master's start: an upgrade or a restarted worker does not reset it.
    if (this.#start !== undefined) relay.stats.startedAt = this.#start.startedAt / 1000;
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
    if (msg.kind === 'stop-now') return this.#stopNow(msg.signal);
    if (socket !== undefined && (msg.kind === 'held-client' || msg.kind === 'dial-back' || msg.kind === 'member')) {
      // Before anything else, in this tick: see adoptHandedOver.
      adoptHandedOver(socket, msg.kind === 'held-client' ? Buffer.from(msg.head, 'base64') : Buffer.alloc(0));
      if (relay === undefined) return void resetSocket(socket); // a public client or dial-back nobody will serve
      // A held client's door may come with leases still being installed: after them.
      if (msg.kind === 'held-client') void this.#installing.then(() => relay.adoptHeldClient(msg.port, socket, msg.proxied));
      else if (msg.kind === 'dial-back') relay.acceptDialBack(socket, msg.token, Buffer.from(msg.head, 'base64'));
      else relay.acceptMember(socket, Buffer.from(msg.head, 'base64'));
      return;
    }
    if (relay === undefined) return;
    if (msg.kind === 'prepare') void this.#prepare(relay);
    else if (msg.kind === 'abort') {
      relay.resumeStateWrites();
      this.#log?.warn('upgrade called off: this worker keeps serving');
    } else if (msg.kind === 'retire') void this.#retire(relay);
    else if (msg.kind === 'leases') {
      this.#installing = this.#installing.then(() => relay.installLeases(msg.leases)).catch((err: unknown) => this.#log?.error({ err }, "installing the predecessor's leases failed"));
    } else if (msg.kind === 'figures') relay.stats.carryOver(msg.figures);
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
    // The successor shows the relay's totals from now on: ours so far, then what the drain adds.
    tell({ kind: 'figures', figures: relay.stats.figuresToCarry() });
    this.#metrics?.close();
    await relay.retire((port, client) => handOff(port, client, this.#log));
    // Held clients and late dial-backs still on their way to the master would be lost.
    await sendsDone();
    await tellAndWait({ kind: 'figures', figures: relay.stats.figuresToCarry() });
    process.exit(0);
  }

  #stopNow(signal: string): void {
    this.#log?.warn({ signal }, 'second signal: resetting open tunnels and exiting now');
    // A cut tunnel must end in a reset, never a FIN after part of a transfer.
    const cut = this.#relay?.cutEverything() ?? Promise.resolve();
    void Promise.race([cut, new Promise((resolve) => setTimeout(resolve, STOP_NOW_SETTLE_MS).unref())]).then(() => process.exit(1));
  }

  /**
   * The IPC channel closed without this worker asking: its master is gone. Node's
   * cluster would exit this process right after this event, and every open tunnel would
   * end in a FIN, which a client takes for the end of its download. No master holds the
   * listening sockets any more, nobody would restart or signal this worker: it stops as
   * on SIGTERM (stops accepting, lets open tunnels finish within --drain-timeout, resets
   * what is left) and exits. A worker already stopping or draining after an upgrade
   * goes on and exits when that is done.
   */
  #masterGone(): void {
    if (cluster.worker !== undefined) cluster.worker.exitedAfterDisconnect = true;
    this.#orphaned = true;
    this.#log?.error('the master process is gone: this worker stops (open tunnels may finish within --drain-timeout, the rest are reset); send it SIGTERM to reset them at once');
    if (this.#stopping || this.#retiring) return;
    this.#stopping = true;
    this.#drainAndExit(1);
  }

  #stop(signal: string): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#log?.info({ signal }, 'stopping (send the signal again to exit at once)');
    // A retiring worker is already draining; it exits when that is done.
    if (!this.#retiring) this.#drainAndExit(0);
  }

  #drainAndExit(code: number): void {
    const relay = this.#relay;
    if (relay === undefined) process.exit(code);
    this.#metrics?.close();
    relay.shutdown().then(
      () => process.exit(code),
      (err: unknown) => {
        this.#log?.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  }

  #passDialBack(socket: Socket, token: string, head: Buffer): boolean {
    // A TLS session cannot cross processes; without a predecessor nobody else knows it.
    if (!this.#predecessor || socket instanceof TLSSocket) return false;
    sendSocket(socket, (more, handle, sent) => tellWithSocket({ kind: 'dial-back', token, head: Buffer.concat([head, more]).toString('base64') }, handle, sent, this.#log));
    return true;
  }
}

/** Sockets sent to the master whose messages are not written yet (Node sends one handle at a time). */
const sending = new Set<Promise<void>>();

/** Sends a socket to the master; the process must not exit before sendsDone(). */
function tellWithSocket(msg: FromWorker, socket: Socket, sent: (err?: Error | null) => void, log: Logger | undefined): void {
  const failed = (err: Error): void => {
    log?.warn({ kind: msg.kind, err: err.message }, 'a socket could not be handed to the master: reset');
    sent(err);
  };
  if (!process.connected || process.send === undefined) return failed(new Error('no master to send to'));
  let settle!: () => void;
  const done = new Promise<void>((resolve) => (settle = resolve));
  sending.add(done);
  process.send(msg, socket, (err) => {
    sending.delete(done);
    if (err instanceof Error) failed(err);
    else sent();
    settle();
  });
}

/** Resolves once every socket handed to the master has left, or after a bound. */
function sendsDone(): Promise<unknown> {
  return Promise.race([Promise.all(sending), new Promise((resolve) => setTimeout(resolve, HAND_OVER_SETTLE_MS).unref())]);
}

/** Hands a pool member's control connection to the master, for the worker of `slot` (see LeaseStore.handOverMember). */
export function handOffMember(slot: number, socket: Socket, head: Buffer, log: Logger | undefined): void {
  sendSocket(socket, (more, handle, sent) => tellWithSocket({ kind: 'member', slot, head: Buffer.concat([head, more]).toString('base64') }, handle, sent, log));
}

/** Hands a public client held at the door of `port` to the master, for the worker that serves the port next. */
export function handOff(port: Place, client: Socket, log: Logger | undefined): void {
  const proxied = proxiedEndsOf(client);
  const msg = { kind: 'held-client', port, ...(proxied === undefined ? {} : { proxied }) } as const;
  sendSocket(client, (head, handle, sent) => tellWithSocket({ ...msg, head: head.toString('base64') }, handle, sent, log));
}

function tell(msg: FromWorker): void {
  if (process.connected) process.send?.(msg);
}

/** tell(), resolving once the message is written (or after a bound): for a last word before exiting. */
function tellAndWait(msg: FromWorker): Promise<unknown> {
  if (!process.connected || process.send === undefined) return Promise.resolve();
  const sent = new Promise((resolve) => process.send?.(msg, undefined, undefined, resolve));
  return Promise.race([sent, new Promise((resolve) => setTimeout(resolve, HAND_OVER_SETTLE_MS).unref())]);
}
