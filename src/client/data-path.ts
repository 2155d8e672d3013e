import { isIP, type Server, type Socket } from 'node:net';
import type { Logger } from '../log.js';
import { FirstLineDeadlines } from '../net/first-line-deadlines.js';
import { dialBackThen, openDataConnection } from './dial-back.js';
import type { Admission, ConnectionTarget, RelayClientOptions } from './options.js';
import { ProbeAnswerer } from './probe.js';
import type { RelayEndpoint } from './transport.js';
import { WarmPool } from './warm-pool.js';
import { poolSize } from './warm-sizer.js';

/**
 * The data port at the address the control connection reached. A relay named by a
 * host name is then not looked up again for every client (getaddrinfo on libuv's
 * thread pool, per dial-back), and a name with several addresses cannot send a
 * dial-back to another machine than the one that sent the CONNECT. TLS still checks
 * the certificate against the name.
 */
export function dataEndpointFor(host: string, reached: string | undefined, dataPort: number, tls: RelayEndpoint['tls']): RelayEndpoint {
  const address = isIP(host) === 0 && reached !== undefined ? { address: reached } : {};
  return { host, ...address, port: dataPort, tls };
}

/** How a pool member's CONNECT is answered: the program is asked first, and a client it cannot serve is declined. */
export interface ClientGate {
  admit: NonNullable<RelayClientOptions['admit']>;
  /** Sends DECLINE for this CONNECT's token. */
  decline: () => void;
}

interface DataPathSettings {
  target: ConnectionTarget;
  prewarm: number | 'auto' | undefined;
  handshakeTimeoutMs: number;
  log: Logger;
}

/**
 * How public clients reach the target: a dial-back for each CONNECT, or a parked
 * connection of the warm pool; each client is handed over as if the target had
 * accepted it itself. Between registrations there is nowhere to dial back to.
 */
export class DataPath {
  readonly #settings: DataPathSettings;
  readonly #probes: ProbeAnswerer;
  readonly #counts = { clients: 0, prewarmed: 0 };
  /** Where the current registration's data connections go. */
  #endpoint: RelayEndpoint | undefined;
  /** The prewarmed connections of the current registration, if it asked for any. */
  #warmPool: WarmPool | undefined;
  /** Dial-backs begun and not yet delivered or given up, and who waits for there to be none. */
  #answering = 0;
  readonly #whenSettled: (() => void)[] = [];
  /** The handshake timeout of every dial-back: one timer for all of them. */
  readonly #deadlines: FirstLineDeadlines;
  readonly #onRefused = (reason: string): void => this.#settings.log.warn({ reason }, 'dial-back refused');

  constructor(settings: DataPathSettings) {
    this.#settings = settings;
    this.#deadlines = new FirstLineDeadlines(settings.handshakeTimeoutMs);
    this.#probes = new ProbeAnswerer(settings.log, settings.handshakeTimeoutMs);
  }

  /** Public clients delivered so far, and how many of them came on a prewarmed connection. */
  get counts(): { clients: number; prewarmed: number } {
    return { ...this.#counts };
  }

  /** A registration began: its data connections go to `endpoint`; a prewarm key from its OK opens a pool. */
  open(endpoint: RelayEndpoint, warmKey: string | undefined): void {
    this.#endpoint = endpoint;
    this.#startWarmPool(endpoint, warmKey);
  }

  /** The registration ended; its parked connections sit on a relay that may be gone. */
  lost(): void {
    this.#endpoint = undefined;
    this.stopPrewarm();
  }

  stopPrewarm(): void {
    this.#warmPool?.close();
    this.#warmPool = undefined;
  }

  /** Answers a CONNECT: dials back with its token and delivers the client; with a gate, once the program admitted it. */
  dialBack(token: string, client: { address: string; port: number }, gate?: ClientGate): void {
    this.#answering++;
    if (gate !== undefined) {
      this.#dialBackAdmitted(token, client, gate)
        .catch((err: unknown) => this.#deliveryFailed(err))
        .finally(() => this.#answered());
      return;
    }
    const endpoint = this.#endpoint;
    if (endpoint === undefined) return this.#answered();
    const began = performance.now();
    // Callbacks, not promises, on the library's busiest path; whatever throws in them (the
    // program's own handler, too) must cost this client, never the process.
    try {
      dialBackThen(endpoint, token, this.#deadlines, this.#onRefused, (socket) => {
        this.#answered();
        if (socket === undefined) return;
        this.#warmPool?.dialed(performance.now() - began);
        try {
          this.#deliver(socket);
        } catch (err) {
          this.#deliveryFailed(err);
        }
      });
    } catch (err) {
      this.#answered();
      this.#deliveryFailed(err);
    }
    // After this client's own connect(), so the pool's growth does not delay it.
    this.#warmPool?.missed();
  }

  /** Resolves once every dial-back begun so far has delivered its client or given up. */
  settled(): Promise<void> {
    return this.#answering === 0 ? Promise.resolve() : new Promise((resolve) => this.#whenSettled.push(resolve));
  }

  #answered(): void {
    if (--this.#answering === 0) for (const resolve of this.#whenSettled.splice(0)) resolve();
  }

  #deliveryFailed(err: unknown): void {
    this.#settings.log.error({ err }, 'delivering a relayed client failed');
  }

  /** Answers a PROBE the same way, though no client comes of it. */
  probe(token: string): void {
    this.#probes.answer(this.#endpoint, token);
  }

  /**
   * The data connection is opened while the program makes ready for the client (a pool
   * member connects its target), and `DATA` is sent only once it said yes: until then
   * the relay may still give the client to another member.
   */
  async #dialBackAdmitted(token: string, client: { address: string; port: number }, gate: ClientGate): Promise<void> {
    const endpoint = this.#endpoint;
    if (endpoint === undefined) return;
    const { log, handshakeTimeoutMs } = this.#settings;
    let verdict: ReturnType<ClientGate['admit']>;
    try {
      verdict = gate.admit(client);
    } catch (err) {
      log.warn({ err }, 'admitting a client failed; declined');
      return gate.decline();
    }
    if (verdict === 'decline') return gate.decline();
    let admission: Admission | undefined;
    const ready = Promise.resolve(verdict).then(
      (answer) => {
        if (answer === 'decline') gate.decline();
        else admission = answer;
        return answer !== 'decline';
      },
      (err: unknown) => {
        log.warn({ err }, 'admitting a client failed; declined');
        gate.decline();
        return false;
      },
    );
    const dialing = openDataConnection(endpoint, { kind: 'DATA', token }, handshakeTimeoutMs, (reason) => log.warn({ reason }, 'dial-back refused'), undefined, ready);
    this.#warmPool?.missed();
    const socket = await dialing;
    if (socket === undefined || admission === undefined) {
      admission?.cancel();
      socket?.destroy();
      return;
    }
    this.#counts.clients++;
    admission.serve(socket);
  }
  #startWarmPool(endpoint: RelayEndpoint, key: string | undefined): void {
    this.stopPrewarm();
    const size = poolSize(this.#settings.prewarm);
    if (size === 0) return;
    if (key === undefined) {
      // A relay started with --max-warm 0 (or --max-warm-total 0) gives no prewarm key.
      const asked = this.#settings.prewarm;
      const level = asked === undefined ? 'debug' : 'warn';
      this.#settings.log[level]({ prewarm: asked ?? 'auto' }, 'the relay parks no prewarmed connections: every client is dialed back');
      return;
    }
    this.#warmPool = new WarmPool({
      endpoint,
      key,
      size,
      deliver: (socket) => {
        this.#counts.prewarmed++;
        this.#deliver(socket);
      },
      log: this.#settings.log,
    });
    this.#warmPool.fill();
  }

  #deliver(socket: Socket): void {
    this.#counts.clients++;
    const target = this.#settings.target;
    if (typeof target === 'function') {
      target(socket);
      return;
    }
    // Behave as if the server had accepted the socket itself, half-close setting included.
    socket.allowHalfOpen = (target as Server & { allowHalfOpen?: boolean }).allowHalfOpen ?? true;
    target.emit('connection', socket);
  }
}
