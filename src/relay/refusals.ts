import type { Socket } from 'node:net';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { Overview } from '../monitor/overview.js';
import type { RefusalReason } from '../monitor/refusal-reasons.js';
import { RefusalLog } from '../monitor/refusal-log.js';
import type { RelayStats } from '../monitor/stats.js';
import { refuse, refusalReply } from '../net/lines.js';
import type { ErrorCode } from '../protocol/messages.js';

/**
 * Where every refusal of the relay goes: counted for /metrics, remembered for the
 * dashboard, and logged once at warn within the log's rate limit, so a flood of bad
 * connections costs counters, not a flood of log writes.
 */
export class Refusals {
  readonly #stats: RelayStats;
  readonly #overview: Overview;
  readonly #log: RefusalLog;

  constructor(stats: RelayStats, overview: Overview, log: Logger, clock: Clock) {
    this.#stats = stats;
    this.#overview = overview;
    this.#log = new RefusalLog(log, clock);
  }

  /** Counts and logs a refusal; `log` is the logger of the service it concerns, if any. */
  count(reason: RefusalReason, fields: Record<string, unknown>, message: string, log?: Logger): void {
    this.#stats.refused(reason);
    this.#overview.refused(reason, fields, message);
    this.#log.warn(reason, fields, message, log);
  }

  /**
   * Refuses a peer of a relay port with `ERR <code> <reason>` (an HTTP 400 for one that
   * spoke HTTP), then closes: a TLS or binary client cannot read the line, which is
   * still harmless.
   */
  reply(socket: Socket, code: ErrorCode, reason: string, fields: Record<string, unknown>, spokeHttp = false): void {
    this.count(code, fields, `connection refused: ${reason}`);
    refuse(socket, refusalReply(code, reason, spokeHttp));
  }
}
