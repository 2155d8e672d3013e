import { Socket } from 'node:net';
import type { FirstLineDeadlines } from '../net/first-line-deadlines.js';
import { ignoreSocketError } from '../net/ignore-error.js';
import { readFirstLine, readFirstLineThen, type FirstLine } from '../net/lines.js';
import { formatMessage } from '../protocol/format.js';
import type { RelayMessage, ServiceMessage } from '../protocol/messages.js';
import { parseRelayLine } from '../protocol/parse.js';

import { dialRelay, type RelayEndpoint } from './transport.js';

/** Where a relayed client came from, and which public address of the relay it reached. */
export interface RelayedClientInfo {
  clientAddress: string;
  clientPort: number;
  /** The relay's address and public port as the client dialed them. */
  serverAddress: string;
  serverPort: number;
}

// Kept on the socket itself: a WeakMap entry per open client would cost every garbage
// collection an ephemeron to trace.
const kRelayInfo = Symbol('relayed client');
type RelayedSocket = Socket & { [kRelayInfo]?: RelayedClientInfo };

/**
 * A plain data connection: once it carries a client, its remoteAddress, remotePort and
 * remoteFamily are the client's, as for a socket the program accepted itself. Getters on
 * a subclass, not properties defined on each socket, which cost every client three
 * descriptors and a change of the socket's shape.
 */
class DataConnection extends Socket {}
const socketGetter = (name: string): (() => unknown) => Object.getOwnPropertyDescriptor(Socket.prototype, name)!.get!;
const relayPeer = socketGetter('remoteAddress');
const relayPort = socketGetter('remotePort');
const relayFamily = socketGetter('remoteFamily');
// TypeScript knows these as properties of Socket, which a subclass may not redefine as getters.
Object.defineProperties(DataConnection.prototype, {
  remoteAddress: {
    get(this: RelayedSocket) {
      return this[kRelayInfo]?.clientAddress ?? relayPeer.call(this);
    },
  },
  remotePort: {
    get(this: RelayedSocket) {
      return this[kRelayInfo]?.clientPort ?? relayPort.call(this);
    },
  },
  remoteFamily: {
    get(this: RelayedSocket) {
      const info = this[kRelayInfo];
      return info === undefined ? relayFamily.call(this) : info.clientAddress.includes(':') ? 'IPv6' : 'IPv4';
    },
  },
});

/**
 * For a socket the library delivered: the public client's address and the relay
 * address it reached (what a PROXY protocol header carries). Undefined for any other socket.
 */
export function relayInfo(socket: Socket): RelayedClientInfo | undefined {
  return (socket as RelayedSocket)[kRelayInfo];
}

/** Why the relay's answer on a data connection is not the one hoped for, for the log. */
export function refusalReason(reply: FirstLine<RelayMessage>): string {
  if (!reply.ok) return reply.reason;
  return reply.msg.kind === 'ERR' ? `${reply.msg.code}: ${reply.msg.text}` : `unexpected ${reply.msg.kind}`;
}

function dialData(relay: RelayEndpoint, onSocket: ((socket: Socket) => void) | undefined): Socket {
  const socket = dialRelay(relay, true, DataConnection);
  onSocket?.(socket);
  // Stays for the socket's life: a reset must never crash a program that did not
  // attach its own 'error' listener (its own listeners still see every error).
  socket.on('error', ignoreSocketError);
  return socket;
}

function present(socket: Socket, first: ServiceMessage & { kind: 'DATA' | 'IDLE' }, timeoutMs: number | undefined): Promise<FirstLine<RelayMessage>> {
  socket.write(formatMessage(first));
  return readFirstLine(socket, parseRelayLine, timeoutMs);
}

/** Opens a data connection, presents `first`, and reads the relay's answer to it. */
export async function presentToken(
  relay: RelayEndpoint,
  first: ServiceMessage & { kind: 'DATA' | 'IDLE' },
  timeoutMs: number | undefined,
  onSocket?: (socket: Socket) => void,
): Promise<{ socket: Socket; reply: FirstLine<RelayMessage> }> {
  const socket = dialData(relay, onSocket);
  return { socket, reply: await present(socket, first, timeoutMs) };
}

/**
 * Opens a data connection and waits for the relay's CLIENT line; from the byte after
 * it, the socket is the public client. `first` is DATA (answering CONNECT) or IDLE (a
 * prewarmed connection, which may wait indefinitely: pass no timeout).
 * With `ready`, the connection is opened at once but `first` waits for it: false
 * closes the connection unused (the relay forgets a connection without a first line).
 * Resolves undefined, having destroyed the socket, when the relay refuses or closes.
 */
export async function openDataConnection(
  relay: RelayEndpoint,
  first: ServiceMessage & { kind: 'DATA' | 'IDLE' },
  timeoutMs: number | undefined,
  onRefused: (reason: string) => void,
  onSocket?: (socket: Socket) => void,
  ready?: Promise<boolean>,
): Promise<Socket | undefined> {
  const socket = dialData(relay, onSocket);
  if (ready !== undefined && !(await ready)) {
    socket.destroy();
    return undefined;
  }
  if (socket.destroyed) {
    onRefused('the data connection failed before its token was sent');
    return undefined;
  }
  const reply = await present(socket, first, timeoutMs);
  return carriesClient(socket, reply, onRefused);
}

/**
 * openDataConnection for a dial-back, with a callback and one timer for all of them
 * (`deadlines`): no promise or timer of its own on the library's busiest path.
 */
export function dialBackThen(relay: RelayEndpoint, token: string, deadlines: FirstLineDeadlines, onRefused: (reason: string) => void, done: (client: Socket | undefined) => void): void {
  const socket = dialData(relay, undefined);
  socket.write(formatMessage({ kind: 'DATA', token }));
  deadlines.watch(socket);
  readFirstLineThen(socket, parseRelayLine, undefined, (_socket, reply) => {
    deadlines.forget(socket);
    done(carriesClient(socket, reply, onRefused));
  });
}

/**
 * A prewarmed connection: `idleLine` (the registration's IDLE line, formatted once) at
 * once, then no deadline, as it may wait for ever; `settled` gets the client, or the
 * reason the relay refused or closed it. Callbacks, like dialBackThen: with prewarm on by
 * default this is the library's busiest path. Returns the socket at once.
 */
export function idleThen(relay: RelayEndpoint, idleLine: string, settled: (socket: Socket, client: Socket | undefined, refusal: string | undefined) => void): Socket {
  const socket = dialData(relay, undefined);
  socket.write(idleLine);
  readFirstLineThen(socket, parseRelayLine, undefined, (_socket, reply) => {
    let refusal: string | undefined;
    const client = carriesClient(socket, reply, (reason) => (refusal = reason));
    settled(socket, client, refusal);
  });
  return socket;
}

/** The data connection once the relay's answer is in: the client's socket, or undefined (destroyed) for a refusal. */
function carriesClient(socket: Socket, reply: FirstLine<RelayMessage>, onRefused: (reason: string) => void): Socket | undefined {
  if (!reply.ok || reply.msg.kind !== 'CLIENT') {
    socket.destroy();
    onRefused(refusalReason(reply));
    return undefined;
  }
  if (reply.rest.length > 0) socket.unshift(reply.rest);
  const { clientAddress, clientPort, serverAddress, serverPort } = reply.msg;
  (socket as RelayedSocket)[kRelayInfo] = { clientAddress, clientPort, serverAddress, serverPort };
  // Code written for a directly connected socket asks it who the peer is: answer with
  // the public client, not the relay (a DataConnection does by itself).
  if (!(socket instanceof DataConnection)) {
    Object.defineProperties(socket, {
      remoteAddress: { value: clientAddress, configurable: true },
      remotePort: { value: clientPort, configurable: true },
      remoteFamily: { value: clientAddress.includes(':') ? 'IPv6' : 'IPv4', configurable: true },
    });
  }
  return socket;
}
