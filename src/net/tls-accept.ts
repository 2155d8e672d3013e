import type { Socket } from 'node:net';
import { createSecureContext, TLSSocket, type SecureContextOptions } from 'node:tls';
import { ignoreSocketError } from './ignore-error.js';
import { runsOver } from './splice.js';

/**
 * Turns accepted TCP sockets into server-side TLS sockets. The relay accepts plain TCP
 * and wraps each connection itself, rather than using tls.Server, so that a connection
 * is counted among the handshakes in progress from its accept, not only once its TLS
 * handshake is done: a flood of connections that never finish the TLS handshake is
 * then bounded and evicted like any other silent flood. The relay's handshake timeout
 * covers the TLS handshake too.
 */
export function tlsAcceptor(options: SecureContextOptions, onHandshakeError: (socket: Socket, err: Error) => void): (raw: Socket) => Socket {
  const secureContext = createSecureContext(options);
  return (raw) => {
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
  };
}
