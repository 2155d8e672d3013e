import type { Socket } from 'node:net';
import { systemClock, type Clock, type Timer } from '../clock.js';
import { newToken } from '../protocol/auth.js';

export interface PendingClient<Owner> {
  token: string;
  owner: Owner;
  client: Socket;
  /** Clock time the CONNECT went out. */
  since: number;
  /** The same moment on the monotonic high-resolution clock, for the latency metric. */
  startedAt: number;
}

/**
 * Public clients waiting for their service to dial back, by token. A token is 128
 * random bits, is sent only to the owning service, can be taken once, and expires:
 * when the timeout passes the client is handed to onExpired and the token is dead.
 */
export class DialbackRegistry<Owner> {
  readonly #pending = new Map<string, { entry: PendingClient<Owner>; timer: Timer }>();
  readonly #timeoutMs: number;
  readonly #onExpired: (entry: PendingClient<Owner>) => void;
  readonly #clock: Clock;

  constructor(timeoutMs: number, onExpired: (entry: PendingClient<Owner>) => void, clock: Clock = systemClock) {
    this.#timeoutMs = timeoutMs;
    this.#onExpired = onExpired;
    this.#clock = clock;
  }

  add(owner: Owner, client: Socket): PendingClient<Owner> {
    const entry: PendingClient<Owner> = { token: newToken(), owner, client, since: this.#clock.now(), startedAt: performance.now() };
    const timer = this.#clock.setTimeout(() => {
      this.#pending.delete(entry.token);
      this.#onExpired(entry);
    }, this.#timeoutMs);
    this.#pending.set(entry.token, { entry, timer });
    return entry;
  }

  /** Single use: a token taken once is gone, whoever presents it next. */
  take(token: string): PendingClient<Owner> | undefined {
    const found = this.#pending.get(token);
    if (found === undefined) return undefined;
    this.#clock.clearTimeout(found.timer);
    this.#pending.delete(token);
    return found.entry;
  }
}
