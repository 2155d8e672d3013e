import { connect, type Socket } from 'node:net';
import { KEEPALIVE_DELAY_MS } from '../config.js';
import { readFirstLine } from '../net/lines.js';
import { formatMessage, type ServiceMessage } from '../protocol/messages.js';

export interface RelayEndpoint {
  host: string;
  port: number;
}

export interface RelayedClient {
  socket: Socket;
  address: string;
  port: number;
}

/**
 * Opens a data connection and waits for the relay's CLIENT line; from the byte after
 * it, the socket is the public client. `first` is DATA (answering CONNECT) or IDLE (a
 * prewarmed connection, which may wait indefinitely: pass no timeout).
 * Resolves undefined, having destroyed the socket, when the relay refuses or closes.
 */
export async function openDataConnection(
  relay: RelayEndpoint,
  first: ServiceMessage & { kind: 'DATA' | 'IDLE' },
  timeoutMs: number | undefined,
  onRefused: (reason: string) => void,
): Promise<RelayedClient | undefined> {
  const socket = connect({ host: relay.host, port: relay.port, allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_DELAY_MS });
  // Stays for the socket's life: a reset must never crash a program that did not
  // attach its own 'error' listener (its own listeners still see every error).
  socket.on('error', () => {});
  socket.write(formatMessage(first));
  const reply = await readFirstLine(socket, timeoutMs);
  if (!reply.ok || reply.msg.kind !== 'CLIENT') {
    const reason = !reply.ok ? reply.reason : reply.msg.kind === 'ERR' ? `${reply.msg.code}: ${reply.msg.text}` : `unexpected ${reply.msg.kind}`;
    socket.destroy();
    onRefused(reason);
    return undefined;
  }
  if (reply.rest.length > 0) socket.unshift(reply.rest);
  // Code written for a directly connected socket asks it who the peer is: answer with
  // the public client, not the relay (the relay's address stays in localAddress).
  const family = reply.msg.clientAddress.includes(':') ? 'IPv6' : 'IPv4';
  Object.defineProperties(socket, {
    remoteAddress: { value: reply.msg.clientAddress, configurable: true },
    remotePort: { value: reply.msg.clientPort, configurable: true },
    remoteFamily: { value: family, configurable: true },
  });
  return { socket, address: reply.msg.clientAddress, port: reply.msg.clientPort };
}
