import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { backoffDelay, type BackoffPolicy } from './backoff.js';
import { idleThen } from './dial-back.js';
import { formatMessage } from '../protocol/format.js';
import { Timers } from './timers.js';
import type { RelayEndpoint } from './transport.js';
import type { WarmSizer } from './warm-sizer.js';
import { resetSocket } from '../net/splice.js';

interface WarmPoolOptions {
  /** Where data connections go (the relay's data port). */
  endpoint: RelayEndpoint;
  /** The prewarm key from this registration's OK. */
  key: string;
  /** How many idle connections to keep parked: a number, or a sizer that follows the arrivals. */
  size: number | WarmSizer;
  deliver: (socket: Socket) => void;
  log: Logger;
}

/** Delay before refilling after a parked connection was cut, so a refusing relay is not hammered. */
const REFILL_AFTER_FAILURE_MS = 1000;
/** How often a self-sizing pool looks whether it may shrink. */
const RESIZE_EVERY_MS = 1000;
/**
 * After an ERR limit, when to try one connection more than the relay last allowed: its
 * total over all services (--max-warm-total) may have room by then, as other services
 * leave. Slow, and slower each time, so a full relay hears one try a service every few
 * minutes, not a stream of them; jittered so that services refused together do not come
 * back together.
 */
const REGROW: BackoffPolicy = { initialMs: 30_000, maxMs: 600_000, jitter: 0.3 };

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
  readonly #sizer: WarmSizer | undefined;
  /** The most this pool ever parks: the size asked for, or the sizer's ceiling. */
  readonly #mostCap: number;
  /** Lowered when the relay refuses more idle connections (its --max-warm or --max-warm-total), raised again by regrow. */
  #cap: number;
  /** ERR limit refusals so far, for the regrow backoff; a regrow already planned. */
  #limitRefusals = 0;
  #regrowPlanned = false;
  #closed = false;
  /** A refill is due this turn: one timer for every client the turn took. */
  #refillPlanned = false;
  /** The IDLE line every connection of the pool presents. */
  readonly #idleLine: string;

  constructor(options: WarmPoolOptions) {
    this.#options = options;
    this.#idleLine = formatMessage({ kind: 'IDLE', token: options.key });
    this.#sizer = typeof options.size === 'number' ? undefined : options.size;
    this.#cap = this.#mostCap = typeof options.size === 'number' ? options.size : options.size.ceiling;
    if (this.#sizer !== undefined) this.#resizeLater();
  }

  fill(): void {
    const want = Math.min(this.#cap, this.#sizer?.target() ?? this.#cap);
    while (!this.#closed && this.#sockets.size < want) this.#openOne();
  }

  /** A client needed a dial-back (the pool was empty): a self-sizing pool counts it and grows. */
  missed(): void {
    if (this.#sizer === undefined) return;
    this.#sizer.arrival();
    this.fill();
  }

  /** A data connection took this long to open. */
  dialed(ms: number): void {
    this.#sizer?.dialed(ms);
  }

  /**
   * Closes parked connections above the target, newest first: the relay hands out the
   * oldest first, so a client is very unlikely to be given one we are closing.
   */
  #shrink(): void {
    const surplus = this.#sockets.size - (this.#sizer?.target() ?? this.#cap);
    if (surplus <= 0) return;
    const newest = [...this.#sockets].slice(-surplus);
    for (const socket of newest) {
      this.#sockets.delete(socket);
      // A reset, not a FIN: should the relay hand this connection a client at this very
      // moment, the client must see it cut, not served and finished.
      resetSocket(socket);
    }
    this.#options.log.debug({ closed: surplus, kept: this.#sockets.size }, 'prewarm pool shrank');
  }

  #resizeLater(): void {
    this.#timers.later(RESIZE_EVERY_MS, () => {
      this.#shrink();
      this.#resizeLater();
    });
  }

  close(): void {
    this.#closed = true;
    this.#timers.cancelAll();
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  #openOne(): void {
    const socket = idleThen(this.#options.endpoint, this.#idleLine, this.#settled);
    this.#sockets.add(socket);
    if (this.#sizer !== undefined) this.#timeConnect(socket);
  }

  /** A parked connection got its client, or was refused or closed. One function for all of them. */
  readonly #settled = (socket: Socket, client: Socket | undefined, refusal: string | undefined): void => {
    const { log } = this.#options;
    if (refusal !== undefined) log.debug({ reason: refusal }, 'prewarmed connection closed');
    // Not in the set any more: shrunk by us, or closed with the pool.
    const wasParked = this.#sockets.delete(socket);
    if (client !== undefined) {
      this.#sizer?.arrival();
      try {
        this.#options.deliver(client);
      } catch (err) {
        log.error({ err }, 'delivering a relayed client failed');
      }
    }
    if (this.#closed || !wasParked) return;
    if (refusal?.startsWith('limit:') === true) {
      // Each refusal means one connection more than the relay allows.
      this.#setCap(Math.min(this.#cap - 1, this.#sockets.size));
      log.warn({ asked: typeof this.#options.size === 'number' ? this.#options.size : 'auto', kept: this.#cap }, 'relay allows fewer prewarmed connections than asked');
      this.#regrowLater();
    } else if (client !== undefined) {
      // On a timer, not now: opening the replacement before the client's first bytes
      // are handled put a connect() on the first byte's path (measured: +100 us). One
      // timer for all the clients of a turn.
      if (this.#refillPlanned) return;
      this.#refillPlanned = true;
      this.#timers.later(0, this.#refill);
    } else {
      this.#timers.later(REFILL_AFTER_FAILURE_MS, () => this.fill());
    }
  };

  readonly #refill = (): void => {
    this.#refillPlanned = false;
    this.fill();
  };

  #setCap(cap: number): void {
    this.#cap = Math.max(0, Math.min(this.#mostCap, cap));
    this.#sizer?.limitCeiling(this.#cap);
  }

  /** Once for a run of refusals (a burst's surplus is refused all at once): one more allowed, later. */
  #regrowLater(): void {
    if (this.#regrowPlanned) return;
    this.#regrowPlanned = true;
    this.#timers.later(backoffDelay(this.#limitRefusals++, REGROW), () => {
      this.#regrowPlanned = false;
      this.#setCap(this.#cap + 1);
      this.fill();
    });
  }

  #timeConnect(socket: Socket): void {
    const began = performance.now();
    const event = this.#options.endpoint.tls === undefined ? 'connect' : 'secureConnect';
    socket.once(event, () => this.#sizer?.dialed(performance.now() - began));
  }
}
