import type { Server, Socket } from 'node:net';
import { plainAddress } from '../protocol/addresses.js';
import type { Message } from '../protocol/messages.js';
import type { ProxiedEnds } from '../protocol/proxy-parse.js';

/**
 * Where public clients came from as a trusted load balancer's PROXY header said
 * (--public-proxy-from); the socket's own addresses are the balancer's. Kept beside the
 * socket rather than on it, and gone with it.
 */
const proxied = new WeakMap<Socket, ProxiedEnds>();

/** From now on the client is who the header says, for every limit, list, log line and CLIENT line. */
export function setProxiedEnds(socket: Socket, ends: ProxiedEnds): void {
  proxied.set(socket, ends);
}

/** What a trusted balancer said of this client, if anything (a successor worker is told it). */
export function proxiedEndsOf(socket: Socket): ProxiedEnds | undefined {
  return proxied.get(socket);
}

export function clientAddressOf(socket: Socket): { address: string; port: number } | undefined {
  const ends = proxied.get(socket);
  if (ends !== undefined) return { address: plainAddress(ends.clientAddress), port: ends.clientPort };
  const address = socket.remoteAddress;
  const port = socket.remotePort;
  if (address === undefined || port === undefined) return undefined;
  return { address: plainAddress(address), port };
}

/** Where a door's clients arrive when it listens on one address: known without asking each socket. */
export interface BoundAddress {
  address: string;
  port: number;
}

/**
 * The CLIENT line for a public client: where it came from and which address it reached
 * (a trusted load balancer's header says both). `bound`, for a door on one address, saves
 * the getsockname a wildcard listener needs to tell which of the host's addresses the client dialed.
 */
export function clientLine(client: Socket, bound: BoundAddress | undefined): Message | undefined {
  const from = clientAddressOf(client);
  const ends = proxied.get(client);
  const to = ends?.serverAddress ?? bound?.address ?? client.localAddress;
  const toPort = ends?.serverPort ?? bound?.port ?? client.localPort;
  if (from === undefined || to === undefined || toPort === undefined) return undefined;
  const plain = ends === undefined && bound !== undefined;
  return { kind: 'CLIENT', clientAddress: from.address, clientPort: from.port, serverAddress: plain ? to : plainAddress(to), serverPort: toPort };
}

/** The address a listening server is bound to, unless that is every address of the host. */
export function boundAddressOf(server: Server): BoundAddress | undefined {
  const bound = server.address();
  if (bound === null || typeof bound === 'string' || bound.address === '::' || bound.address === '0.0.0.0') return undefined;
  return { address: plainAddress(bound.address), port: bound.port };
}
