import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { createSecureContext, TLSSocket, type SecureContext, type SecureContextOptions } from 'node:tls';
import { ignoreSocketError } from './ignore-error.js';
import { runsOver } from './splice.js';

/** Turns accepted TCP sockets into server-side TLS sockets, with a certificate that can be replaced. */
export interface TlsAcceptor {
  wrap(raw: Socket): Socket;
  /**
   * Connections accepted from now on get this certificate and key; open ones keep the
   * one they shook hands with. Throws, keeping the current pair, if the pair is unusable.
   */
  replace(options: SecureContextOptions): void;
}

/**
 * The relay accepts plain TCP and wraps each connection itself, rather than using
 * tls.Server, so that a connection is counted among the handshakes in progress from its
 * accept, not only once its TLS handshake is done: a flood of connections that never
 * finish the TLS handshake is then bounded and evicted like any other silent flood. The
 * relay's handshake timeout covers the TLS handshake too.
 */
export function tlsAcceptor(options: SecureContextOptions, onHandshakeError: (socket: Socket, err: Error) => void): TlsAcceptor {
  // One set of session-ticket keys for every certificate this acceptor serves: services
  // keep resuming their sessions across a certificate reload instead of all doing a full
  // handshake at once (each session was verified when it began).
  const ticketKeys = randomBytes(48);
  const contextOf = (pair: SecureContextOptions): SecureContext => createSecureContext({ ...pair, ticketKeys });
  let secureContext = contextOf(options);
  return {
    replace: (pair) => void (secureContext = contextOf(pair)),
    wrap: (raw) => {
      raw.on('error', ignoreSocketError);
      // allowHalfOpen is taken from the raw socket, so half-close still works over TLS.
      const socket = new TLSSocket(raw, { isServer: true, secureContext });
      runsOver(socket, raw);
      let secure = false;
      socket.once('secure', () => (secure = true));
      socket.on('error', (err) => {
        if (!secure) onHandshakeError(socket, err);
      });
      return socket;
    },
  };
}

/** The files of a certificate and its key, as --tls-cert and --tls-key name them. */
export interface CertificateFiles {
  cert: string;
  key: string;
}

/**
 * Reads a PEM certificate and its key and checks them: an Error names the flag and the
 * file that is not readable, not PEM, or not the key of the certificate.
 */
export function readCertificatePair(files: CertificateFiles): { cert: Buffer; key: Buffer } {
  const read = (flag: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`cannot read ${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
    }
  };
  const cert = read('--tls-cert', files.cert);
  const key = read('--tls-key', files.key);
  const check = (what: () => unknown, problem: string): void => {
    try {
      what();
    } catch (err) {
      throw new Error(`${problem} (${(err as Error).message})`, { cause: err });
    }
  };
  check(() => new X509Certificate(cert), `--tls-cert ${files.cert} is not a PEM certificate`);
  check(() => createPrivateKey(key), `--tls-key ${files.key} is not an unencrypted PEM private key`);
  check(() => createSecureContext({ cert, key }), `--tls-key ${files.key} does not go with --tls-cert ${files.cert}`);
  return { cert, key };
}

/** What a log line says of a certificate: whom it names and until when it is valid. */
export function describeCertificate(cert: Buffer): { subject: string; validTo: string } {
  const x509 = new X509Certificate(cert);
  const validTo = new Date(x509.validTo);
  return { subject: x509.subject.replace(/\n/g, ', '), validTo: Number.isNaN(validTo.getTime()) ? x509.validTo : validTo.toISOString() };
}
