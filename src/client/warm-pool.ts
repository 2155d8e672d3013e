import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { openDataConnection } from './dial-back.js';
import { Timers } from './timers.js';
import type { RelayEndpoint } from './transport.js';

export interface WarmPoolOptions {
  /** Where data connections go (the relay's data port). */
  endpoint: RelayEndpoint;
  /** The prewarm key from this registration's OK. */
  key: string;
  /** How many idle connections to keep parked. */
  size: number;
  deliver: (socket: Socket) => void;
  log: Logger;
}

/** Delay before refilling after a parked connection was cut, so a refusing relay is not hammered. */
const REFILL_AFTER_FAILURE_MS = 1000;

/**
 * The prewarmed data connections of one registration: keeps `size` IDLE connections
 * parked on the relay, hands each to `deliver` when the relay turns it into a client
 * (its CLIENT line), and opens a replacement. One pool per registration: a new
 * registration brings a new pool, and close() drops this one's connections.
 */
export class WarmPool {
  readonly #options: WarmPoolOptions;
  readonly #sockets = new Set<Socket>();
  readonly #timers = new Timers();
  /** Lowered when the relay refuses more idle connections (its --max-warm is below ours). */
  #cap: number;
  #closed = false;

  constructor(options: WarmPoolOptions) {
    this.#options = options;
    this.#cap = options.size;
  }

  fill(): void {
    while (!this.#closed && this.#sockets.size < this.#cap) {
      this.#openOne().catch((err: unknown) => this.#options.log.error({ err }, 'delivering a relayed client failed'));
    }
  }

  close(): void {
    this.#closed = true;
    this.#timers.cancelAll();
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  async #openOne(): Promise<void> {
    const { endpoint, key, log } = this.#options;
    let refusedForLimit = false;
    let opened: Socket | undefined;
    const client = await openDataConnection(
      endpoint,
      { kind: 'IDLE', token: key },
      undefined,
      (reason) => {
        refusedForLimit = reason.startsWith('limit:');
        log.debug({ reason }, 'prewarmed connection closed');
      },
      (socket) => {
        opened = socket;
        this.#sockets.add(socket);
      },
    );
    if (opened !== undefined) this.#sockets.delete(opened);
    if (client !== undefined) this.#options.deliver(client);
    if (this.#closed) return;
    if (refusedForLimit) {
      // Each refusal means one connection more than the relay allows.
      this.#cap -= 1;
      log.warn({ asked: this.#options.size, kept: this.#cap }, 'relay allows fewer prewarmed connections than asked');
    } else if (client !== undefined) {
      // On a timer, not now: opening the replacement before the client's first bytes
      // are handled put a connect() on the first byte's path (measured: +100 us).
      this.#timers.later(0, () => this.fill());
    } else {
      this.#timers.later(REFILL_AFTER_FAILURE_MS, () => this.fill());
    }
  }
}
