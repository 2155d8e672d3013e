import type { Socket } from 'node:net';
import type { Clock } from '../clock.js';
import { formatMessage } from '../protocol/format.js';
import type { Message } from '../protocol/messages.js';

/**
 * Bytes queued on a control connection (beyond what the kernel holds) above which new
 * public clients are refused instead of announced. A burst of clients while the service
 * is briefly slow then costs those clients, not the whole registration: --max-pending
 * allows far more CONNECT lines (4096 of up to ~80 bytes) than this.
 */
const CONTROL_HIGH_WATER = 64 * 1024;

/**
 * Bytes queued past which the service is dropped at once. CONNECTs stop at the
 * high-water mark, so only a service that keeps sending (PINGs) without reading the
 * answers gets here; the margin is thousands of PONGs.
 */
const CONTROL_HARD_LIMIT = CONTROL_HIGH_WATER + 16 * 1024;

/** Lines held back for one write at most: far more than one turn's CONNECTs, usually. */
const CORKED_MAX = 16 * 1024;

/**
 * Writes a session's control lines and tells a service that is slow to read (refuse
 * new clients for now) from one that has stopped reading (drop the registration).
 *
 * Lines written in one event-loop turn leave in one write: the socket is corked at the
 * first and uncorked in the check phase (setImmediate), after every connection the
 * poll phase accepted. process.nextTick would not do: Node drains the tick queue after
 * each accepted connection's callback, so it would flush one CONNECT at a time. Under
 * bursts this saves a system call, and a wake-up of the service, per client.
 */
export class ControlWriter {
  readonly #socket: Socket;
  readonly #clock: Clock;
  /** Since when the queue has been above the high-water mark, as seen at the last check. */
  #fullSince: number | undefined;
  /** Bytes written since the socket was corked: not yet offered to the kernel, so not a backlog. */
  #corkedBytes = 0;
  #corked = false;
  readonly #flush = (): void => {
    if (!this.#corked) return;
    this.#corked = false;
    this.#corkedBytes = 0;
    this.#socket.uncork();
  };

  constructor(socket: Socket, clock: Clock) {
    this.#socket = socket;
    this.#clock = clock;
  }

  /** Whether the queue is above the high-water mark now. */
  get full(): boolean {
    return this.#check();
  }

  /** Bytes the kernel would not take yet; corked lines are not among them. */
  #backlog(): number {
    return this.#socket.writableLength - this.#corkedBytes;
  }

  #check(): boolean {
    if (this.#backlog() < CONTROL_HIGH_WATER) {
      this.#fullSince = undefined;
      return false;
    }
    this.#fullSince ??= this.#clock.now();
    return true;
  }

  /** How long the queue has stayed above the high-water mark (0 when it is not). */
  fullForMs(): number {
    return this.full ? this.#clock.now() - (this.#fullSince ?? this.#clock.now()) : 0;
  }

  /** Writes the line; false when the queue is past the hard limit and the service must go. */
  send(msg: Message): boolean {
    const socket = this.#socket;
    if (this.#backlog() > CONTROL_HARD_LIMIT) return false;
    if (socket.destroyed || !socket.writable) return true; // its close ends the session
    if (!this.#corked) {
      this.#corked = true;
      socket.cork();
      setImmediate(this.#flush);
    }
    const line = formatMessage(msg);
    socket.write(line);
    this.#corkedBytes += line.length;
    // A turn that accepted thousands of clients: let the kernel have what it can now.
    if (this.#corkedBytes >= CORKED_MAX) this.#flush();
    this.#check();
    return true;
  }
}
