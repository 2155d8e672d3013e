import { pino } from 'pino';
import { RELAY_DEFAULTS, type RelayOptions } from '../../src/config/defaults.js';
import { validateRelayOptions } from '../../src/config/rules.js';
import type { Logger } from '../../src/log.js';
import { RelayContext } from '../../src/relay/context.js';
import { ManualClock } from './clock.js';

/**
 * A relay's shared parts on a manual clock, without listeners: for unit tests of the
 * registrar, sessions and doors. `refusals()` lists the refusal reasons counted so far,
 * oldest first; `logged()` every log record at info and above, oldest first.
 */
export function testContext(options: Partial<RelayOptions> = {}, clock = new ManualClock()) {
  const checked = validateRelayOptions({ ...RELAY_DEFAULTS, port: 7000, ports: { first: 7001, last: 7010 }, ...options });
  let services = 0;
  const records: Record<string, unknown>[] = [];
  // Written synchronously, so a record is there as soon as the call that logs it returns.
  const sink = { write: (line: string): void => void records.push(JSON.parse(line) as Record<string, unknown>) };
  const ctx = new RelayContext(checked, pino({ level: 'info' }, sink) as Logger, clock, { count: () => services, listed: () => [] });
  const refusals = (): string[] =>
    ctx.overview
      .recentRefusals()
      .map((refusal) => refusal.reason)
      .reverse();
  const logged = (): Record<string, unknown>[] => [...records];
  return { ctx, clock, refusals, logged, setServices: (n: number) => (services = n) };
}
