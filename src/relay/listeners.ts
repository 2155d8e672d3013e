import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { KEEPALIVE_DELAY_MS } from '../config/defaults.js';
import { setOnListener } from '../net/listener-options.js';
import { acceptFailure, listenOrFail } from '../net/out-of-fds.js';
import { describeCertificate, readCertificatePair, tlsAcceptor, type CertificateFiles, type TlsAcceptor } from '../net/tls-accept.js';
import type { RelayContext } from './context.js';

/** Listen backlog: bursts of thousands of clients must queue, not be reset by the kernel. */
const LISTEN_BACKLOG = 4096;

const SERVER_OPTIONS = {
  allowHalfOpen: true,
  pauseOnConnect: true,
  noDelay: true,
  keepAlive: true,
  keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
} as const;

type Accepted = (socket: Socket) => void;

/**
 * The relay's TLS for its control and data ports, when it has a certificate: one
 * acceptor for both, so a reload (Relay.reload) replaces the certificate on both.
 */
export function serviceTls(ctx: RelayContext): TlsAcceptor | undefined {
  const { options, refusals } = ctx;
  if (options.tls === undefined) return undefined;
  return tlsAcceptor(options.tls, (socket, err) => {
    const fields = { peer: socket.remoteAddress, err: (err as NodeJS.ErrnoException).code ?? err.message };
    refusals.count('tls', fields, 'connection refused: TLS handshake failed');
  });
}

/** New connections get the files' certificate, open ones keep theirs; a pair that does not load changes nothing. */
export function reloadCertificate(ctx: RelayContext, tls: TlsAcceptor, files: CertificateFiles): void {
  try {
    const pair = readCertificatePair(files);
    const described = describeCertificate(pair.cert);
    tls.replace(pair);
    ctx.log.info({ cert: files.cert, ...described }, 'SIGHUP: TLS certificate reloaded; new connections get it');
  } catch (err) {
    ctx.log.error({ err: (err as Error).message }, 'SIGHUP: TLS certificate not reloaded; still serving the previous one');
  }
}

/**
 * Listens on a control or data port (TLS when `secure` is given) and hands every
 * accepted connection, already wrapped in TLS, to `accepted`. Rejects if the port
 * cannot be had.
 */
export async function listenForServices(ctx: RelayContext, port: number, secure: TlsAcceptor | undefined, accepted: Accepted): Promise<Server> {
  const server = createServer(SERVER_OPTIONS, (raw) => accepted(secure?.wrap(raw) ?? raw));
  const failed = once(server, 'error');
  server.listen({ port, backlog: LISTEN_BACKLOG, ...bindOf(ctx) });
  try {
    await Promise.race([once(server, 'listening'), failed.then(([err]) => Promise.reject(err as Error))]);
  } catch (err) {
    server.close();
    throw err;
  }
  setOnListener(server);
  keepAcceptingAfterErrors(ctx, server);
  return server;
}

/** A public port listening, or why not: another program holds it, or no file descriptor is left. */
export type PublicListen = { ok: true; server: Server } | { ok: false; why: 'taken' | 'fds' };

/**
 * Listens on a public port. `lookFirst` (listenOrFail's): find another program's hold on
 * the port without a socket through the master; off for a port the master may still
 * hold for this worker or a predecessor.
 */
export async function listenPublic(ctx: RelayContext, port: number, lookFirst: boolean): Promise<PublicListen> {
  const server = createServer(SERVER_OPTIONS);
  const outcome = await listenOrFail(server, { port, backlog: LISTEN_BACKLOG, ...bindOf(ctx) }, lookFirst);
  if (outcome !== 'listening') return { ok: false, why: outcome };
  setOnListener(server);
  keepAcceptingAfterErrors(ctx, server, port);
  return { ok: true, server };
}

function bindOf(ctx: RelayContext): { host?: string } {
  return ctx.options.bind === undefined ? {} : { host: ctx.options.bind };
}

/** Accept failures (EMFILE) must not kill the relay: counted, and the server keeps listening. */
function keepAcceptingAfterErrors(ctx: RelayContext, server: Server, port?: number): void {
  server.on('error', (err: NodeJS.ErrnoException) => {
    const { reason, message } = acceptFailure(err);
    ctx.refusals.count(reason, { err: err.code ?? err.message, ...(port === undefined ? {} : { port }) }, message);
  });
}
