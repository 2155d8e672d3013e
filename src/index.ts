/**
 * tcp-relay's public API: serve a program through a relay (listenViaRelay), run a
 * relay in-process (Relay), and the errors both can raise.
 */
import { RelayRegistration } from './client/registration.js';

export { listenViaRelay, RelayRegistration } from './client/registration.js';
export type { RelayClientOptions, PublicAddress, ConnectionTarget, CloseOptions, Admission } from './client/options.js';
export { relayInfo } from './client/dial-back.js';
export type { RelayTlsOptions } from './client/transport.js';
export type { RelayedClientInfo } from './client/dial-back.js';
export { Relay } from './relay/relay.js';
export type { RelayOptions, PortRange } from './config/defaults.js';
export { RELAY_DEFAULTS } from './config/defaults.js';
export { RelayError, UsageError, RegistrationRefusedError } from './errors.js';
export type { RelayErrorCode, RefusalCode } from './errors.js';
export { splice } from './net/splice.js';
export type { SpliceResult } from './net/splice.js';
export type { LeaseRecord, LeaseStore } from './leases/lease-store.js';

/** @deprecated The old name of {@link RelayRegistration} (a tunnel is one spliced client). */
export const RelayTunnel = RelayRegistration;
/** @deprecated The old name of {@link RelayRegistration}. */
export type RelayTunnel = RelayRegistration;
