import { connect, isIP, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { KEEPALIVE_DELAY_MS } from '../config.js';

/** TLS towards the relay: on when given, with a private CA if the relay's certificate needs one. */
export interface RelayTlsOptions {
  /** PEM of the CA that signed the relay's certificate; the system CAs when omitted. */
  ca?: string | Buffer;
  /** The name to verify the certificate against; the relay host when it is a name. */
  servername?: string;
}

export interface RelayEndpoint {
  host: string;
  port: number;
  tls?: RelayTlsOptions | undefined;
}

/** A connection to one of the relay's own ports, plain or TLS; writes may start at once. */
export function dialRelay(endpoint: RelayEndpoint, allowHalfOpen: boolean): Socket {
  const { host, port, tls } = endpoint;
  const socket =
    tls === undefined
      ? connect({ host, port, allowHalfOpen })
      : connectTls({
          host,
          port,
          // Honoured by tls.connect at run time, though @types/node does not list it.
          ...({ allowHalfOpen } as object),
          ...(tls.ca === undefined ? {} : { ca: tls.ca }),
          ...(tls.servername !== undefined ? { servername: tls.servername } : isIP(host) ? {} : { servername: host }),
        });
  socket.setNoDelay(true);
  socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
  return socket;
}
