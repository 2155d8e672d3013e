import type { Socket } from 'node:net';
import { resetSocket } from './splice.js';

/**
 * The connections a program still has open, for a graceful stop: wait (bounded) until
 * they have all finished by themselves, or reset every one of them. A reset, never a
 * FIN: a peer that saw a clean end after part of a transfer would take it for the whole.
 * Whoever adds a socket says when it is done (delete), so "done" can mean "closed" or
 * "closed and logged".
 */
export class OpenConnections {
  readonly #sockets = new Set<Socket>();
  #waiters: (() => void)[] = [];

  get size(): number {
    return this.#sockets.size;
  }

  add(socket: Socket): void {
    this.#sockets.add(socket);
  }

  delete(socket: Socket): void {
    if (!this.#sockets.delete(socket) || this.#sockets.size > 0) return;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves true once every connection is done, false when ms passed first. */
  whenEmpty(ms: number): Promise<boolean> {
    if (this.#sockets.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      timer.unref();
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Resets every open connection now; resolves once all are done, or false after ms. */
  resetAll(ms: number): Promise<boolean> {
    for (const socket of [...this.#sockets]) resetSocket(socket);
    return this.whenEmpty(ms);
  }
}
