import { connect, isIP, type Socket, type TcpNetConnectOpts } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { KEEPALIVE_DELAY_MS } from '../config/defaults.js';

/** TLS towards the relay: on when given, with a private CA if the relay's certificate needs one. */
export interface RelayTlsOptions {
  /** PEM of the CA that signed the relay's certificate; the system CAs when omitted. */
  ca?: string | Buffer;
  /** The name to verify the certificate against; the relay host when it is a name. */
  servername?: string;
}

/**
 * The latest TLS session (ticket) per relay port, so each dial-back resumes instead of
 * doing a full handshake (half the relay's CPU per client with TLS). One cache per
 * registration, never shared: a resumed session skips certificate checks, so it must only be
 * offered under the same `ca` and `servername` that verified it.
 */
export class TlsSessions {
  readonly #byPort = new Map<string, Buffer>();

  get(host: string, port: number): Buffer | undefined {
    return this.#byPort.get(`${host}:${port}`);
  }

  set(host: string, port: number, session: Buffer): void {
    this.#byPort.set(`${host}:${port}`, session);
  }
}

export interface RelayEndpoint {
  /** The relay's name as the user gave it: what TLS verifies. */
  host: string;
  /** Where to connect, when already resolved; `host` otherwise. */
  address?: string;
  port: number;
  tls?: (RelayTlsOptions & { sessions?: TlsSessions }) | undefined;
}

/** The `tls` of an endpoint for the `tls` option, sharing the registration's session cache. */
export function endpointTls(tls: boolean | RelayTlsOptions | undefined, sessions: TlsSessions): RelayEndpoint['tls'] {
  if (tls === true) return { sessions };
  return tls === false || tls === undefined ? undefined : { ...tls, sessions };
}

/** A connection to one of the relay's own ports, plain (a `plain` if given) or TLS; writes may start at once. */
export function dialRelay(endpoint: RelayEndpoint, allowHalfOpen: boolean, plain?: new (options: TcpNetConnectOpts) => Socket): Socket {
  const { host, port, tls } = endpoint;
  const address = endpoint.address ?? host;
  if (tls === undefined) {
    // As options, not setNoDelay()/setKeepAlive() calls on the connecting socket: those
    // set the options when the socket is created and Node sets them again once it is
    // connected, ten system calls where these five do.
    const options: TcpNetConnectOpts = { host: address, port, allowHalfOpen, noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_DELAY_MS };
    // What net.connect() does, with the caller's kind of socket.
    return plain === undefined ? connect(options) : new plain(options).connect(options);
  }
  const sessions = tls.sessions;
  const session = sessions?.get(host, port);
  const socket = connectTls({
    host: address,
    port,
    // Honoured by tls.connect at run time, though @types/node does not list it.
    ...({ allowHalfOpen } as object),
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    ...(tls.servername !== undefined ? { servername: tls.servername } : isIP(host) ? {} : { servername: host }),
    ...(session === undefined ? {} : { session }),
  });
  if (sessions !== undefined) socket.on('session', (ticket: Buffer) => sessions.set(host, port, ticket));
  socket.setNoDelay(true);
  socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
  return socket;
}
