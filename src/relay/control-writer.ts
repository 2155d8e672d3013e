import type { Socket } from 'node:net';
import type { Clock } from '../clock.js';
import { sendMessage } from '../net/lines.js';
import type { Message } from '../protocol/messages.js';

/**
 * Bytes queued on a control connection (beyond what the kernel holds) above which new
 * public clients are refused instead of announced. A burst of clients while the service
 * is briefly slow then costs those clients, not the whole registration: --max-pending
 * allows far more CONNECT lines (4096 of up to ~80 bytes) than this.
 */
export const CONTROL_HIGH_WATER = 64 * 1024;

/**
 * Bytes queued past which the service is dropped at once. CONNECTs stop at the
 * high-water mark, so only a service that keeps sending (PINGs) without reading the
 * answers gets here; the margin is thousands of PONGs.
 */
const CONTROL_HARD_LIMIT = CONTROL_HIGH_WATER + 16 * 1024;

/**
 * Writes a session's control lines and tells a service that is slow to read (refuse
 * new clients for now) from one that has stopped reading (drop the registration).
 */
export class ControlWriter {
  readonly #socket: Socket;
  readonly #clock: Clock;
  /** Since when the queue has been above the high-water mark, as seen at the last check. */
  #fullSince: number | undefined;

  constructor(socket: Socket, clock: Clock) {
    this.#socket = socket;
    this.#clock = clock;
  }

  /** Whether the queue is above the high-water mark now. */
  get full(): boolean {
    return this.#check();
  }

  #check(): boolean {
    if (this.#socket.writableLength < CONTROL_HIGH_WATER) {
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
    if (this.#socket.writableLength > CONTROL_HARD_LIMIT) return false;
    sendMessage(this.#socket, msg);
    this.#check();
    return true;
  }
}
