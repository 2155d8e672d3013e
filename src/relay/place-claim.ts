import type { Socket } from 'node:net';
import type { TenantAccount } from '../access/tenancy.js';
import type { ServiceMessage, ErrorCode } from '../protocol/messages.js';
import { refuse, refusalReply } from '../net/lines.js';
import type { RelayContext } from './context.js';
import { nameTakenReason } from './name-claim.js';
import type { PublicPorts } from './public-ports.js';

/** What a claim needs of a registration that passed its checks. */
interface Claimant {
  hello: ServiceMessage & { kind: 'HELLO' };
  key: string;
  grant: { account: TenantAccount } | undefined;
  peer: string | undefined;
}

/** Refuses the registration with a counted ERR. */
type Refuse = (code: ErrorCode, reason: string) => unknown;

/**
 * A public port for the registration, or undefined when it was refused (through `refusal`, or for want of descriptors).
 * `unreachable`: why the store could not agree (LeaseStore.unreachable) [default: the fleet's etcd].
 */
export async function claimPortOf(ctx: RelayContext, ports: PublicPorts, { hello, key, grant, peer }: Claimant, socket: Socket, refusal: Refuse, unreachable?: string): Promise<number | undefined> {
  const tenant = grant?.account;
  const claim = await ports.claim(hello.port, key, tenant?.scope);
  if (claim.ok) return claim.port;
  if (claim.why === 'fds') {
    ctx.refusals.count('fds', { peer }, 'connection refused: out of file descriptors (raise ulimit -n)');
    // Not counted again: the refusal was counted as fds.
    refuse(socket, refusalReply('limit', 'out of file descriptors'));
  } else if (claim.why === 'unreachable') refusal('limit', `${unreachable ?? 'the fleet cannot agree on a port now (etcd unreachable)'}; try again`);
  else {
    tenant?.refused('ports');
    refusal('limit', `no free public port in the ${tenant === undefined ? 'relay' : `tenant ${tenant.name}'s`} range`);
  }
  return undefined;
}

/** The host for the registration's key (agreed fleet-wide in a fleet), or undefined when it was refused. */
export async function claimNameOf(ports: PublicPorts, { key, grant }: Claimant, host: string, refusal: Refuse, unreachable?: string): Promise<string | undefined> {
  const taken = await ports.claimName(host, key, grant?.account.name);
  if (taken.ok) return host;
  if (taken.why === 'taken') refusal('limit', nameTakenReason(host));
  else if (taken.why === 'unreachable') refusal('limit', `${unreachable?.replace('a port', 'a name') ?? 'the fleet cannot agree on a name now (etcd unreachable)'}; try again`);
  else if (taken.why === 'elsewhere') refusal('limit', `this resume key holds the name ${taken.host} in the fleet until its grace ends; try again`);
  return undefined;
}
