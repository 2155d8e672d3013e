import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import type { RefusalReason } from '../monitor/refusal-reasons.js';
import { descriptorFree } from '../net/out-of-fds.js';
import { resetSocket } from '../net/splice.js';
import { clientAddressOf } from './client-address.js';
import type { RelayContext } from './context.js';

/** How a session refuses a public client it was handed: counted, logged, reset. */

/** Counts and logs the refusal, then resets the client; false, for a caller's early return. */
export function refuseClient(ctx: RelayContext, log: Logger, client: Socket, reason: RefusalReason, detail: string): false {
  ctx.refusals.count(reason, { client: clientAddressOf(client)?.address }, `public client refused: ${detail}`, log);
  // A reset, as every other refusal of a public client: a FIN would read as a server
  // that answered nothing and finished.
  resetSocket(client);
  return false;
}

/** A client whose service did not dial back in time, while the service kept talking: reset. */
export function refuseExpired(ctx: RelayContext, log: Logger, client: Socket): void {
  // At EMFILE the runtime closes new connections unseen, the dial-back among them: say so.
  const outOfFds = !descriptorFree();
  const why = outOfFds ? ' (the relay is out of file descriptors: the dial-back may have been dropped)' : '';
  const fields = { client: clientAddressOf(client)?.address };
  ctx.refusals.count(outOfFds ? 'fds' : 'dialback-timeout', fields, `service did not dial back in time${why}; client reset`, log);
  resetSocket(client);
}
