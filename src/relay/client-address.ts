import type { Server, Socket } from 'node:net';
import { plainAddress } from '../protocol/addresses.js';
import type { Message } from '../protocol/messages.js';

export function clientAddressOf(socket: Socket): { address: string; port: number } | undefined {
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
 * The CLIENT line for a public client: where it came from and which address it reached.
 * `bound`, for a door on one address, saves the getsockname a wildcard listener needs
 * to tell which of the host's addresses the client dialed.
 */
export function clientLine(client: Socket, bound: BoundAddress | undefined): Message | undefined {
  const from = clientAddressOf(client);
  const to = bound?.address ?? client.localAddress;
  const toPort = bound?.port ?? client.localPort;
  if (from === undefined || to === undefined || toPort === undefined) return undefined;
  return { kind: 'CLIENT', clientAddress: from.address, clientPort: from.port, serverAddress: bound === undefined ? plainAddress(to) : to, serverPort: toPort };
}

/** The address a listening server is bound to, unless that is every address of the host. */
export function boundAddressOf(server: Server): BoundAddress | undefined {
  const bound = server.address();
  if (bound === null || typeof bound === 'string' || bound.address === '::' || bound.address === '0.0.0.0') return undefined;
  return { address: plainAddress(bound.address), port: bound.port };
}
