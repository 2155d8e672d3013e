import type { Socket } from 'node:net';
import { refuse } from '../net/lines.js';
import { formatMessage } from '../protocol/format.js';
import type { RelayContext } from './context.js';
import type { Registrar } from './registrar.js';

/** Another process's relay that may know a token this one does not (during an upgrade). */
export type PassDialBack = (socket: Socket, token: string, head: Buffer) => boolean;

/**
 * A data connection presented `DATA <token>`: a waiting client's dial-back (spliced by
 * its session), a probe's (answered PROBED and closed), one for the worker this one
 * replaces (`passOn`), or nothing anyone waits for (refused).
 */
export function dialedBack(ctx: RelayContext, socket: Socket, token: string, head: Buffer, passOn: PassDialBack | undefined): void {
  const entry = ctx.tokens.take(token);
  if (entry?.kind === 'client') return entry.owner.dialedBack(entry, socket, head);
  if (entry?.kind === 'probe') {
    refuse(socket, formatMessage({ kind: 'PROBED' }));
    entry.settle({ ok: true, seconds: ctx.tokens.secondsWaited(entry) });
    return;
  }
  if (passOn?.(socket, token, head) === true) return;
  ctx.refusals.reply(socket, 'bad-token', 'unknown, used or expired token', { peer: socket.remoteAddress });
}

/** A prewarmed data connection (`IDLE <prewarm key>`): parked with its service until a client comes. */
export function parkIdle(ctx: RelayContext, registrar: Registrar, socket: Socket, warmToken: string, head: Buffer): void {
  const refuseIdle = (reason: string, code: 'bad-token' | 'bad-line' | 'limit'): void => ctx.refusals.reply(socket, code, reason, { peer: socket.remoteAddress });
  const session = registrar.sessionByWarmToken(warmToken);
  if (session === undefined) return refuseIdle('unknown prewarm key', 'bad-token');
  if (head.length > 0) return refuseIdle('an idle data connection must wait for CLIENT', 'bad-line');
  const refused = session.addIdle(socket);
  if (refused !== undefined) refuseIdle(refused, 'limit');
}
