import type { Socket } from 'node:net';
import { systemClock, type Clock, type Timer } from '../clock.js';
import { newToken } from '../protocol/auth.js';

export interface PendingClient<Owner> {
  token: string;
  owner: Owner;
  client: Socket;
  /** Clock time the CONNECT was written (it leaves at the end of that event-loop turn). */
  since: number;
  /** The same moment on the monotonic clock: the timeout and the latency metric count from it. */
  startedAt: number;
}

/**
 * Public clients waiting for their service to dial back, by token. A token is 128
 * random bits, is sent only to the owning service, can be taken once, and expires:
 * when the timeout passes the client is handed to onExpired and the token is dead.
 *
 * Every entry has the same timeout, so the Map's insertion order is also the order
 * they fall due in: one timer, armed for the oldest entry, serves them all, where a
 * timer per client would cost an allocation and three timer calls on every client's path.
 */
export class DialbackRegistry<Owner> {
  readonly #pending = new Map<string, PendingClient<Owner>>();
  readonly #timeoutMs: number;
  readonly #onExpired: (entry: PendingClient<Owner>) => void;
  readonly #clock: Clock;
  #timer: Timer | undefined;

  constructor(timeoutMs: number, onExpired: (entry: PendingClient<Owner>) => void, clock: Clock = systemClock) {
    this.#timeoutMs = timeoutMs;
    this.#onExpired = onExpired;
    this.#clock = clock;
  }

  /** Clients waiting now, all services together. */
  get size(): number {
    return this.#pending.size;
  }

  add(owner: Owner, client: Socket): PendingClient<Owner> {
    const clock = this.#clock;
    const entry: PendingClient<Owner> = { token: newToken(), owner, client, since: clock.now(), startedAt: clock.monotonic() };
    this.#pending.set(entry.token, entry);
    if (this.#timer === undefined) this.#armFor(entry);
    return entry;
  }

  /**
   * Single use: a token taken once is gone, whoever presents it next. The timer stays
   * armed for an entry that may be gone: when it fires it finds the next one due,
   * one wasted wake-up per timeout instead of a clearTimeout per client.
   */
  take(token: string): PendingClient<Owner> | undefined {
    const entry = this.#pending.get(token);
    if (entry !== undefined) this.#pending.delete(token);
    return entry;
  }

  // Node rounds timers down to whole milliseconds from its cached loop time, so this often
  // wakes a fraction early and arms again for 1 ms: one spare wake-up per expiry.
  #armFor(oldest: PendingClient<Owner>): void {
    const dueIn = Math.max(1, oldest.startedAt + this.#timeoutMs - this.#clock.monotonic());
    this.#timer = this.#clock.setTimeout(() => this.#expireDue(), dueIn);
  }

  #expireDue(): void {
    const now = this.#clock.monotonic();
    const due: PendingClient<Owner>[] = [];
    for (const entry of this.#pending.values()) {
      if (now - entry.startedAt < this.#timeoutMs) break;
      due.push(entry);
    }
    for (const entry of due) this.#pending.delete(entry.token);
    // Armed before the callbacks run, so that a client they add finds the timer armed.
    const next = this.#pending.values().next();
    this.#timer = undefined;
    if (!next.done) this.#armFor(next.value);
    for (const entry of due) this.#onExpired(entry);
  }
}
