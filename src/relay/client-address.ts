import type { Socket } from 'node:net';
import { plainAddress } from '../protocol/addresses.js';
import type { Message } from '../protocol/messages.js';

export function clientAddressOf(socket: Socket): { address: string; port: number } | undefined {
  const address = socket.remoteAddress;
  const port = socket.remotePort;
  if (address === undefined || port === undefined) return undefined;
  return { address: plainAddress(address), port };
}

/** The CLIENT line for a public client: where it came from and which address it reached. */
export function clientLine(client: Socket): Message | undefined {
  const from = clientAddressOf(client);
  const to = client.localAddress;
  const toPort = client.localPort;
  if (from === undefined || to === undefined || toPort === undefined) return undefined;
  return { kind: 'CLIENT', clientAddress: from.address, clientPort: from.port, serverAddress: plainAddress(to), serverPort: toPort };
}
