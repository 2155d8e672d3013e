import type { Socket } from 'node:net';
import { newToken } from '../protocol/auth.js';

export interface PendingClient<Owner> {
  token: string;
  owner: Owner;
  client: Socket;
  since: number;
}

/**
 * Public clients waiting for their service to dial back, by token. A token is 128
 * random bits, is sent only to the owning service, can be taken once, and expires:
 * when the timeout passes the client is handed to onExpired and the token is dead.
 */
export class DialbackRegistry<Owner> {
  readonly #pending = new Map<string, { entry: PendingClient<Owner>; timer: NodeJS.Timeout }>();
  readonly #timeoutMs: number;
  readonly #onExpired: (entry: PendingClient<Owner>) => void;

  constructor(timeoutMs: number, onExpired: (entry: PendingClient<Owner>) => void) {
    this.#timeoutMs = timeoutMs;
    this.#onExpired = onExpired;
  }

  add(owner: Owner, client: Socket): PendingClient<Owner> {
    const entry: PendingClient<Owner> = { token: newToken(), owner, client, since: performance.now() };
    const timer = setTimeout(() => {
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
    clearTimeout(found.timer);
    this.#pending.delete(token);
    return found.entry;
  }
}
