import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { addressGroup } from '../protocol/addresses.js';

/*
 * Bounds on what a client of the --metrics listener can hold. Its requests are small GETs
 * sent in one packet by a browser or a scraper, so anything slower is a client that
 * holds a file descriptor for nothing: Node's own defaults (60 s for the headers,
 * checked every 30 s, and no cap at all) let 400 half-sent requests keep 400 fds.
 */

/** A request's head must be complete this soon after the connection opens (408 after). */
export const HEADERS_TIMEOUT_MS = 5_000;
/** The whole request; ours have no body, so barely more than the head. */
export const REQUEST_TIMEOUT_MS = 10_000;
/** An idle keep-alive connection: the dashboard polls every second, a scraper every 15 s or more. */
export const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** Node applies the two timeouts above only when it checks: this often, so they hold to a second. */
export const CHECK_INTERVAL_MS = 1_000;
/** A connection that moves no byte either way (a client that stopped reading its answer). */
export const IDLE_SOCKET_TIMEOUT_MS = 30_000;
/** Connections at once: a few browsers (6 each at most) and scrapers need far fewer. */
export const MAX_CONNECTIONS = 128;
/**
 * Connections at once from one address (IPv6: one /64), so one client that fills its
 * share leaves the others theirs; several tabs of one browser stay well below it.
 */
export const MAX_CONNECTIONS_PER_ADDRESS = 32;

/** The options Node takes only at creation: how often the timeouts are checked. */
export const SERVER_OPTIONS = { connectionsCheckingInterval: CHECK_INTERVAL_MS } as const;

/** Applies the timeouts and both caps to the listener; a connection over a cap is closed at once, unread. */
export function limitConnections(server: Server): void {
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.timeout = IDLE_SOCKET_TIMEOUT_MS;
  server.maxConnections = MAX_CONNECTIONS;
  const perAddress = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const key = addressGroup(socket.remoteAddress ?? '');
    const count = perAddress.get(key) ?? 0;
    if (count >= MAX_CONNECTIONS_PER_ADDRESS) {
      socket.destroy();
      return;
    }
    perAddress.set(key, count + 1);
    socket.once('close', () => {
      const left = (perAddress.get(key) ?? 1) - 1;
      if (left === 0) perAddress.delete(key);
      else perAddress.set(key, left);
    });
  });
}
