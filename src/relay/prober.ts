import type { Clock, Timer } from '../clock.js';
import type { Logger } from '../log.js';
import type { ProbeStatus } from '../monitor/probe-status.js';
import type { RelayStats } from '../monitor/stats.js';
import type { Feature } from '../protocol/messages.js';
import type { PendingProbe, ProbeOutcome } from './tokens.js';

/** What a prober needs from the relay around its session. */
interface ProberHost {
  readonly clock: Clock;
  readonly stats: RelayStats;
  /** The relay's token table (tokens.ts): where a probe waits for its dial-back. */
  readonly tokens: { addProbe(settle: (outcome: ProbeOutcome) => void): PendingProbe; take(token: string): unknown };
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
  /** The token of the probe awaiting its dial-back. */
  #inFlight: string | undefined;
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
    if (this.#inFlight !== undefined) this.#host.tokens.take(this.#inFlight);
    if (this.#status.state === 'failing') this.#host.stats.servicesProbeFailing--;
  }

  #schedule(delayMs: number): void {
    this.#timer = this.#host.clock.setTimeout(() => this.#probe(), Math.max(0, delayMs));
  }

  #probe(): void {
    if (this.#stopped) return;
    const sentAt = this.#host.clock.now();
    const probe = this.#host.tokens.addProbe((outcome) => {
      this.#inFlight = undefined;
      if (this.#stopped) return;
      this.#record(outcome);
      this.#schedule(sentAt + this.#host.options.probeIntervalMs - this.#host.clock.now());
    });
    this.#inFlight = probe.token;
    this.#send(probe.token);
  }

  #record(outcome: ProbeOutcome): void {
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
