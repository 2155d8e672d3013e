import type { Socket } from 'node:net';
import type { TenantAccount } from '../access/tenancy.js';
import type { Logger } from '../log.js';
import type { RefusalReason } from '../monitor/refusal-reasons.js';
import { descriptorFree } from '../net/out-of-fds.js';
import type { AccessList } from '../protocol/cidr.js';
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

/** What of a session the limits on its clients look at. */
interface ClientTaker {
  readonly port: number;
  readonly taken: number;
  readonly log: Logger;
  readonly tenant: TenantAccount | undefined;
  readonly access: AccessList | undefined;
}

/**
 * Who may connect (again: a held client's lists may have changed), then the limits on
 * taken clients. False when the client was refused and reset.
 */
export function withinClientLimits(ctx: RelayContext, session: ClientTaker, client: Socket): boolean {
  const { stats, options } = ctx;
  const { log, tenant } = session;
  if (!ctx.admission.permits(client, session.port, [tenant?.spec.access, session.access])) return false;
  if (session.taken >= options.maxClientsPerService) return refuseClient(ctx, log, client, 'clients', `over ${options.maxClientsPerService} clients`);
  // Held clients (at any door) count too: see PublicDoor.hold.
  if (stats.publicClients >= options.maxTunnels) return refuseClient(ctx, log, client, 'tunnels', `over ${options.maxTunnels} tunnels in all`);
  if (tenant?.admitsClient() === false) return refuseClient(ctx, log, client, 'tenant-clients', `tenant ${tenant.name} is at its maxClients of ${tenant.limits.maxClients}`);
  return true;
}
