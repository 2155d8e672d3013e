import { RegistrationRefusedError } from '../errors.js';
import { joinHostPort } from '../protocol/addresses.js';
import { RELAY_KINDS } from '../protocol/parse.js';

/** What a control connection saw before it ended: enough to tell a setting that can never work from a loss. */
export interface AttemptRecord {
  /** The socket's error, if it had one. */
  error: NodeJS.ErrnoException | undefined;
  /** The first bytes the peer sent, if it sent any. */
  firstBytes: Buffer | undefined;
  /** The peer's first line did not parse as a message a relay sends. */
  badFirstLine: boolean;
  /** This side ended the connection (a timeout, a refusal, a bad line), not the peer. */
  endedHere: boolean;
}

/**
 * What a failed attempt means: settings that cannot work with what answered (stop, when
 * they never worked), a name that does not resolve (retry: DNS comes back), or anything
 * else (retry), with a hint for the user when the symptom suggests one.
 */
export type AttemptFailure = { kind: 'wrong-settings'; error: RegistrationRefusedError } | { kind: 'unresolved' } | { kind: 'other'; hint?: string };

/** Certificate checks that pass once the client trusts the CA that signed the certificate. */
const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_UNTRUSTED',
  'INVALID_CA',
]);
/** Certificate checks that fail on the name the certificate was asked for. */
const WRONG_NAME = new Set(['ERR_TLS_CERT_ALTNAME_INVALID', 'HOSTNAME_MISMATCH']);
/** Certificate checks about its dates. */
const OUT_OF_DATE = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD']);
/** OpenSSL's words for a peer whose answer is no TLS record (Node gives them as EPROTO when a write was pending). */
const NOT_TLS = /wrong version number|packet length too long|record layer failure|http request/i;
/** The other X.509 verification failures Node reports. */
const OTHER_BAD_CERT = new Set([
  'CERT_SIGNATURE_FAILURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_REJECTED',
]);

/** What answered, as one short printable quote of its first line. */
function firstLineOf(bytes: Buffer): string {
  const end = bytes.indexOf(0x0a);
  const line = bytes.subarray(0, end === -1 ? Math.min(bytes.length, 80) : Math.min(end, 80)).toString('latin1');
  const printable = line.replace(/\r$/, '').replace(/[^\x20-\x7e]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return printable.length > 60 ? `${printable.slice(0, 60)}...` : printable;
}

/** Whether the first line starts with a verb of the relay's, in printable ASCII: a relay's line, if one this version cannot read. */
function relayShaped(bytes: Buffer): boolean {
  const end = bytes.indexOf(0x0a);
  const line = bytes
    .subarray(0, end === -1 ? bytes.length : end)
    .toString('latin1')
    .replace(/\r$/, '');
  return !/[^\x20-\x7e]/.test(line) && RELAY_KINDS.has(line.split(' ')[0] ?? '');
}

function tlsFailure(error: NodeJS.ErrnoException, relay: string, host: string): RegistrationRefusedError | undefined {
  const code = error.code ?? '';
  const why = `${code}: ${error.message}`;
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || ((code === 'EPROTO' || code.startsWith('ERR_SSL_')) && NOT_TLS.test(error.message)))
    return new RegistrationRefusedError('tls', `${relay} does not speak TLS (it answered in plain text): leave out --tls and --ca`);
  if (UNTRUSTED.has(code)) return new RegistrationRefusedError('tls', `the TLS certificate of ${relay} failed verification (${why}): give the CA that signed it with --ca FILE`);
  if (WRONG_NAME.has(code)) return new RegistrationRefusedError('tls', `the TLS certificate of ${relay} is not for "${host}" (${why}): use a RELAYHOST the certificate names`);
  if (OUT_OF_DATE.has(code)) return new RegistrationRefusedError('tls', `the TLS certificate of ${relay} is out of date (${why}): its operator must renew it, or this machine's clock is wrong`);
  if (OTHER_BAD_CERT.has(code)) return new RegistrationRefusedError('tls', `the TLS certificate of ${relay} failed verification (${why}): check --ca FILE`);
  return undefined;
}

/** Classifies a control connection that ended without a registration, for `host:port` (TLS or not). */
export function attemptFailure(record: AttemptRecord, endpoint: { host: string; port: number; tls: boolean }): AttemptFailure {
  const relay = joinHostPort(endpoint.host, endpoint.port);
  const { error, firstBytes } = record;
  // HTTP, binary, or words no relay sends; a relay's verb with a bad line is a protocol error, retried.
  if (record.badFirstLine && firstBytes !== undefined && !relayShaped(firstBytes)) {
    const answered = firstLineOf(firstBytes);
    return { kind: 'wrong-settings', error: new RegistrationRefusedError('not-a-relay', `${relay} is not a relay's control port: it answered "${answered}"`) };
  }
  if (error?.syscall === 'getaddrinfo') return { kind: 'unresolved' };
  if (error !== undefined && endpoint.tls) {
    const refusal = tlsFailure(error, relay, endpoint.host);
    if (refusal !== undefined) return { kind: 'wrong-settings', error: refusal };
  }
  // A relay with TLS drops a plain HELLO without a word (to it, not a TLS handshake).
  const silent = firstBytes === undefined && !record.endedHere && (error === undefined || error.code === 'ECONNRESET');
  if (silent && !endpoint.tls) return { kind: 'other', hint: 'no reply to HELLO; the relay may expect TLS (--tls)' };
  return { kind: 'other' };
}
