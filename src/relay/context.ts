import type { Clock } from '../clock.js';
import type { RelayOptions } from '../config/defaults.js';
import type { Logger } from '../log.js';
import { Overview, type ListedService } from '../monitor/overview.js';
import { RelayStats } from '../monitor/stats.js';
import { Handshakes } from './handshakes.js';
import { OpenTunnels } from './open-tunnels.js';
import { PublicAdmission } from './public-admission.js';
import { Refusals } from './refusals.js';
import { TokenTable, type ClientOwner } from './tokens.js';

/** The services a relay has, as its registrar answers for them. */
export interface RegisteredServices {
  /** Registered now. */
  count(): number;
  /** For the dashboard: registered now, and away with their port kept, in registration order. */
  listed(): Iterable<ListedService>;
}

/**
 * What every part of one relay's data path shares: its options, clock and logger, and
 * the few objects that each hold one piece of its state (the counters, the dashboard's
 * record, the tokens awaited on the data port, the open tunnels). Made once by Relay and
 * handed to the registrar, every session and every door, so each calls the part it needs
 * directly instead of asking the layer above it to pass the call on.
 */
export class RelayContext {
  readonly options: RelayOptions;
  readonly log: Logger;
  readonly clock: Clock;
  readonly stats: RelayStats;
  readonly overview: Overview;
  readonly refusals: Refusals;
  readonly handshakes: Handshakes;
  /** Dial-back and probe tokens awaited on the data port. */
  readonly tokens: TokenTable<ClientOwner>;
  readonly tunnels: OpenTunnels;
  /** The per-address limits on public ports. */
  readonly admission: PublicAdmission;
  /** The port services dial back to, once the relay listens. */
  dataPort = 0;
  /** Set once a stop or a handover has begun: nothing new is accepted. */
  shuttingDown = false;

  /** `services`: what the registrar knows of the services, read when asked (never copied). */
  constructor(options: RelayOptions, log: Logger, clock: Clock, services: RegisteredServices) {
    this.options = options;
    this.log = log;
    this.clock = clock;
    this.stats = new RelayStats({ servicesActive: () => services.count(), tunnelsOpen: () => this.tunnels.size });
    this.overview = new Overview(this.stats.bytes, () => services.listed());
    this.refusals = new Refusals(this.stats, this.overview, log, clock);
    this.handshakes = new Handshakes(options.handshakeTimeoutMs, this.refusals);
    this.tokens = new TokenTable<ClientOwner>(options.dialbackTimeoutMs, (entry) => entry.owner.dialbackExpired(entry), clock);
    this.tunnels = new OpenTunnels(this.stats, this.overview, { idleTimeoutMs: options.idleTimeoutMs, clock });
    this.admission = new PublicAdmission(options, clock, this.refusals);
  }
}
