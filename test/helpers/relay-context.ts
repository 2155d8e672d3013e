import { RELAY_DEFAULTS, type RelayOptions } from '../../src/config/defaults.js';
import { validateRelayOptions } from '../../src/config/rules.js';
import { silentLogger } from '../../src/log.js';
import { RelayContext } from '../../src/relay/context.js';
import { ManualClock } from './clock.js';

/**
 * A relay's shared parts on a manual clock, without listeners: for unit tests of the
 * registrar, sessions and doors. `refusals()` lists the refusal reasons counted so far,
 * oldest first.
 */
export function testContext(options: Partial<RelayOptions> = {}, clock = new ManualClock()) {
  const checked = validateRelayOptions({ ...RELAY_DEFAULTS, port: 7000, ports: { first: 7001, last: 7010 }, ...options });
  let services = 0;
  const ctx = new RelayContext(checked, silentLogger, clock, { count: () => services, listed: () => [] });
  const refusals = (): string[] =>
    ctx.overview
      .recentRefusals()
      .map((refusal) => refusal.reason)
      .reverse();
  return { ctx, clock, refusals, setServices: (n: number) => (services = n) };
}
