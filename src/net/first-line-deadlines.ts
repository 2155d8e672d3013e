import type { Socket } from 'node:net';
import { endFirstLine, firstLineTimeout } from './lines.js';

/**
 * The time limit of first-line reads (readFirstLineThen) that all have the same one: a
 * read not done in time ends as a timeout. All have the same limit, so the order they
 * were watched in is the order they fall due in: one timer, armed for the oldest,
 * serves them all, where a timer per connection would be set and cleared for each.
 */
export class FirstLineDeadlines {
  readonly timeoutMs: number;
  readonly #startedAt = new Map<Socket, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(timeoutMs: number) {
    this.timeoutMs = timeoutMs;
  }

  /** Starts the clock on the read now in progress on `socket`. */
  watch(socket: Socket): void {
    const now = performance.now();
    this.#startedAt.delete(socket);
    this.#startedAt.set(socket, now);
    if (this.#timer === undefined) this.#armFor(now);
  }

  /** The read ended (call it from the read's `done`). */
  forget(socket: Socket): void {
    this.#startedAt.delete(socket);
  }

  // Unref'd: the sockets it watches keep the process alive, and a timer left armed after
  // the last of them must not. The timer is not cleared when its socket is done early:
  // it then wakes once for nothing and arms for the next oldest. Node rounds timers down,
  // so it may also wake a little early and arm again.
  #armFor(startedAt: number): void {
    const dueIn = Math.max(1, startedAt + this.timeoutMs - performance.now());
    this.#timer = setTimeout(() => this.#expireDue(), dueIn).unref();
  }

  #expireDue(): void {
    this.#timer = undefined;
    const now = performance.now();
    const due: Socket[] = [];
    for (const [socket, startedAt] of this.#startedAt) {
      if (now - startedAt < this.timeoutMs) break;
      due.push(socket);
    }
    for (const socket of due) this.#startedAt.delete(socket);
    const timedOut = firstLineTimeout(this.timeoutMs);
    for (const socket of due) endFirstLine(socket, timedOut);
    const next = this.#startedAt.values().next();
    if (!next.done && this.#timer === undefined) this.#armFor(next.value);
  }
}
