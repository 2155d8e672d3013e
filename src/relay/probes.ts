import type { Socket } from 'node:net';
import type { Clock, Timer } from '../clock.js';
import type { Logger } from '../log.js';
import { refuse } from '../net/lines.js';
import { newToken } from '../protocol/auth.js';
import { formatMessage } from '../protocol/format.js';
import type { Feature } from '../protocol/messages.js';
import type { RelayStats } from '../monitor/stats.js';

/**
 * What the relay knows of one service's data path. `not-probed`: the service did not
 * list `probe` (or probes are off), so nothing is known, and nothing is wrong either.
 * `pending`: probed, no result yet. Then `ok` or `failing` after each probe.
 */
export interface ProbeStatus {
  readonly state: 'not-probed' | 'pending' | 'ok' | 'failing';
  /** Clock time (ms since the epoch) of the latest result. */
  readonly lastAt?: number;
  /** Seconds from PROBE to the dial-back, for the latest probe that succeeded. */
  readonly lastSeconds?: number;
  /** Probes failed in a row; 0 once one succeeds. */
  readonly failuresInARow: number;
  /** Why the latest probe failed, while failing. */
  readonly reason?: string;
}

export const NOT_PROBED: ProbeStatus = { state: 'not-probed', failuresInARow: 0 };

type Outcome = { ok: true; seconds: number } | { ok: false; reason: string };

/**
 * Probe tokens of every service, apart from the clients' dial-back tokens so that
 * neither can ever stand for the other: a probe token gets PROBED and never a client,
 * a client's token never gets PROBED. Like those, 128 random bits, sent only to the
 * service probed, single use, and dead after the timeout.
 */
export class ProbeTokens {
  readonly #pending = new Map<string, { timer: Timer; startedAt: number; done: (outcome: Outcome) => void }>();
  readonly #clock: Clock;
  readonly #timeoutMs: number;

  constructor(clock: Clock, timeoutMs: number) {
    this.#clock = clock;
    this.#timeoutMs = timeoutMs;
  }

  /** A new token; `done` is called exactly once, unless the probe is cancelled first. */
  issue(done: (outcome: Outcome) => void): { token: string; cancel: () => void } {
    const token = newToken();
    const timer = this.#clock.setTimeout(() => {
      this.#pending.delete(token);
      done({ ok: false, reason: `no dial-back within ${this.#timeoutMs} ms` });
    }, this.#timeoutMs);
    this.#pending.set(token, { timer, startedAt: performance.now(), done });
    return { token, cancel: () => this.#take(token) };
  }

  /** A data connection presented `token`: if it is a live probe token, answers PROBED and closes. */
  answer(token: string, data: Socket): boolean {
    const probe = this.#take(token);
    if (probe === undefined) return false;
    refuse(data, formatMessage({ kind: 'PROBED' }));
    probe.done({ ok: true, seconds: (performance.now() - probe.startedAt) / 1000 });
    return true;
  }

  #take(token: string): { startedAt: number; done: (outcome: Outcome) => void } | undefined {
    const probe = this.#pending.get(token);
    if (probe === undefined) return undefined;
    this.#clock.clearTimeout(probe.timer);
    this.#pending.delete(token);
    return probe;
  }
}

/** What a prober needs from the relay around its session. */
export interface ProberHost {
  readonly clock: Clock;
  readonly stats: RelayStats;
  readonly probes: ProbeTokens;
  readonly options: { readonly probeIntervalMs: number };
}

/**
 * Probes one service every interval: sends PROBE (through `send`, the session's
 * control writer) and waits for the dial-back. One probe at a time; the next goes out
 * an interval after the previous one, or at once when that one took longer. Logs only
 * when the state changes, so a service that stays broken is one warning, not one per
 * interval.
 */
export class ServiceProber {
  readonly #host: ProberHost;
  readonly #log: Logger;
  readonly #send: (token: string) => void;
  #status: ProbeStatus = { state: 'pending', failuresInARow: 0 };
  #timer: Timer | undefined;
  #inFlight: { cancel: () => void } | undefined;
  #stopped = false;

  constructor(host: ProberHost, log: Logger, send: (token: string) => void) {
    this.#host = host;
    this.#log = log;
    this.#send = send;
    this.#schedule(host.options.probeIntervalMs);
  }

  get status(): ProbeStatus {
    return this.#status;
  }

  /** The session is over: no more probes, and an outstanding one is forgotten, not failed. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#host.clock.clearTimeout(this.#timer);
    this.#inFlight?.cancel();
    if (this.#status.state === 'failing') this.#host.stats.servicesProbeFailing--;
  }

  #schedule(delayMs: number): void {
    this.#timer = this.#host.clock.setTimeout(() => this.#probe(), Math.max(0, delayMs));
  }

  #probe(): void {
    if (this.#stopped) return;
    const sentAt = this.#host.clock.now();
    const probe = this.#host.probes.issue((outcome) => {
      this.#inFlight = undefined;
      if (this.#stopped) return;
      this.#record(outcome);
      this.#schedule(sentAt + this.#host.options.probeIntervalMs - this.#host.clock.now());
    });
    this.#inFlight = probe;
    this.#send(probe.token);
  }

  #record(outcome: Outcome): void {
    const { stats, clock } = this.#host;
    const was = this.#status.state;
    const lastAt = clock.now();
    if (outcome.ok) {
      stats.observeProbe(outcome.seconds);
      this.#status = { state: 'ok', lastAt, lastSeconds: outcome.seconds, failuresInARow: 0 };
      if (was === 'failing') {
        stats.servicesProbeFailing--;
        this.#log.info({ probeSeconds: outcome.seconds }, 'probe ok again: the data path works');
      }
      return;
    }
    stats.probeFailures++;
    const failuresInARow = this.#status.failuresInARow + 1;
    this.#status = { ...this.#status, state: 'failing', lastAt, failuresInARow, reason: outcome.reason };
    if (was !== 'failing') {
      stats.servicesProbeFailing++;
      this.#log.warn({ reason: outcome.reason }, 'probe failed: the service did not dial back; its public clients will wait in vain');
    }
  }
}

/** A prober for a service that listed `probe`, when probes are on; else undefined (not probed). */
export function startProber(host: ProberHost, features: ReadonlySet<Feature>, log: Logger, send: (token: string) => void): ServiceProber | undefined {
  if (!features.has('probe') || host.options.probeIntervalMs <= 0) return undefined;
  return new ServiceProber(host, log, send);
}
