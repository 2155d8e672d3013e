import type { Socket } from 'node:net';
import type { FirstLine } from '../net/lines.js';
import type { ServiceMessage } from '../protocol/messages.js';
import type { RelayContext } from './context.js';
import { dialedBack, parkIdle, type PassDialBack } from './data-connections.js';
import type { Registrar } from './registrar.js';

/** Which first lines a listener takes: the control port's, the data port's, or both (one shared port). */
export interface Accepts {
  control: boolean;
  data: boolean;
}

/**
 * What a connection's first line makes of it: a registration (HELLO), a dial-back
 * (DATA), a prewarmed connection (IDLE), or a refusal. A promise only for a
 * registration, whose steps wait for the lease store.
 */
export function routeFirstLine(
  ctx: RelayContext,
  registrar: Registrar,
  socket: Socket,
  first: FirstLine<ServiceMessage>,
  accepts: Accepts,
  passOn: PassDialBack | undefined,
): Promise<void> | undefined {
  if (!first.ok) {
    // A peer that half-closed before its line: our sockets allow half-open, so
    // without this it would sit in CLOSE_WAIT for ever.
    if (first.code === 'closed') return void socket.destroy();
    return void ctx.refusals.reply(socket, first.code, first.reason, { peer: socket.remoteAddress }, first.spokeHttp);
  }
  const { msg, rest } = first;
  if (msg.kind === 'HELLO' && accepts.control) return registrar.register(socket, msg, rest, first.line);
  if (msg.kind === 'DATA' && accepts.data) return void dialedBack(ctx, socket, msg.token, rest, passOn);
  if (msg.kind === 'IDLE' && accepts.data) return void parkIdle(ctx, registrar, socket, msg.token, rest);
  const expected = accepts.control ? (accepts.data ? 'HELLO, DATA or IDLE' : 'HELLO') : 'DATA or IDLE';
  return void ctx.refusals.reply(socket, 'bad-line', `expected ${expected} as the first line`, { peer: socket.remoteAddress });
}
