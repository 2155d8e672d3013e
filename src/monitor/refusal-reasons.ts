import type { ErrorCode } from '../protocol/messages.js';

/**
 * Why the relay refused, dropped or reset a connection, besides the protocol's error
 * codes (which name the refusals that send `ERR <code>` to a peer).
 */
export const OTHER_REFUSAL_REASONS = [
  // Connections dropped before a line could be read.
  'tls', // the TLS handshake on a control or data port failed
  'handshakes', // the oldest of too many connections still in their handshake
  'fds', // out of file descriptors
  'accept', // accept() failed for another reason
  'metrics', // the --metrics listener's accept failed
  // Public clients reset before or instead of a tunnel.
  'proxy-header', // from a --public-proxy-from address without a valid PROXY header in time
  'ip-denied', // not allowed by --allow/--deny, a tenant's lists or its service's
  'connect-rate',
  'clients-per-ip',
  'clients',
  'tunnels',
  'tenant-clients',
  'pending',
  'control-busy',
  'dialback-timeout',
  'hold-timeout',
  // Clients of a names port refused before their host was known, or for it.
  'unknown-name', // no service registered the host the SNI or Host header named (or none was named)
  'prelude-timeout', // no host named within the handshake timeout
  'prelude-too-long', // no host named within 16 KiB
  'prelude-bad', // neither a TLS ClientHello nor an HTTP/1.x request
] as const;

/**
 * The label of `relay_refusals_total{reason}`, and the `reason` field of a refusal's
 * log line and of `/api/refusals`. docs/operations.md lists them (a unit test checks).
 */
export type RefusalReason = ErrorCode | (typeof OTHER_REFUSAL_REASONS)[number];
