import { connect, type Socket } from 'node:net';
import { KEEPALIVE_DELAY_MS } from '../config/defaults.js';
import type { Logger } from '../log.js';

/** ./expose's TARGET: where each public client gets its own connection. */
export interface Target {
  host: string;
  port: number;
}

/** Why a connection to the target failed, for the log and the caller's choice (reset or decline). */
export class TargetFailure extends Error {
  readonly kind: 'refused' | 'timeout';

  constructor(kind: 'refused' | 'timeout', message: string) {
    super(message);
    this.name = 'TargetFailure';
    this.kind = kind;
  }
}

/**
 * Connects to the target for one client. A target that drops packets would otherwise
 * keep the client waiting for the kernel's SYN timeout (minutes): after `timeoutMs` it
 * counts as a failure.
 */
export function connectTarget(target: Target, timeoutMs: number): Promise<Socket> {
  const backend = connect({ ...target, allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_DELAY_MS });
  // Stays for the socket's life: the splice sees a later error through its own listener.
  backend.on('error', () => {});
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      backend.destroy();
      reject(new TargetFailure('timeout', `no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    backend.once('connect', () => {
      clearTimeout(timer);
      resolve(backend);
    });
    // After 'connect' this settles nothing: the promise is resolved already.
    backend.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new TargetFailure('refused', err.code ?? err.message));
    });
  });
}

/** The longest a health check's connect may take: past it the target counts as down. */
const CHECK_TIMEOUT_MAX_MS = 5_000;

/**
 * The target's health, as a TCP connect every interval sees it (the first at once).
 * `changed` hears each change, down or back up; the target starts as up, the state a
 * pool member starts in on the relay. Checks never overlap: the next waits an interval
 * after the previous one ended.
 */
export class TargetCheck {
  readonly #target: Target;
  readonly #intervalMs: number;
  readonly #log: Logger;
  readonly #changed: (state: 'up' | 'down') => void;
  #state: 'up' | 'down' = 'up';
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(target: Target, intervalMs: number, log: Logger, changed: (state: 'up' | 'down') => void) {
    this.#target = target;
    this.#intervalMs = intervalMs;
    this.#log = log;
    this.#changed = changed;
  }

  get state(): 'up' | 'down' {
    return this.#state;
  }

  start(): void {
    this.#check();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #check(): void {
    const timeoutMs = Math.min(Math.max(this.#intervalMs, 500), CHECK_TIMEOUT_MAX_MS);
    connectTarget(this.#target, timeoutMs).then(
      (socket) => {
        socket.destroy();
        this.#result('up', undefined);
      },
      (err: Error) => this.#result('down', err.message),
    );
  }

  /**
   * A client's connect to the target failed: down now, not at the next check, so the
   * relay stops sending this member clients it would have to reset (a prewarmed client
   * cannot be declined). The checks go on and bring it back up.
   */
  sawFailure(why: string): void {
    if (!this.#stopped) this.#set('down', why);
  }

  #result(state: 'up' | 'down', why: string | undefined): void {
    if (this.#stopped) return;
    this.#set(state, why);
    this.#timer = setTimeout(() => this.#check(), this.#intervalMs);
    // The control connection keeps the process alive; a check alone must not.
    this.#timer.unref();
  }

  #set(state: 'up' | 'down', why: string | undefined): void {
    if (state === this.#state) return;
    this.#state = state;
    const target = `${this.#target.host}:${this.#target.port}`;
    if (state === 'down') this.#log.warn({ target, err: why }, 'target is down: the relay sends new clients to the other members');
    else this.#log.info({ target }, 'target is up again');
    this.#changed(state);
  }
}
