import type { Socket } from 'node:net';
import { challenge, challenges } from '../access/service-auth.js';
import type { Tenancy, TenantGrant } from '../access/tenancy.js';
import { leaseKey } from '../leases/lease-store.js';
import { newToken } from '../protocol/auth.js';
import { PROTOCOL_VERSION, type ErrorCode, type ServiceMessage } from '../protocol/messages.js';
import type { RelayContext } from './context.js';

type Hello = ServiceMessage & { kind: 'HELLO' };

/** A registration that passed its checks, on its way to a port. */
export interface Admitted {
  hello: Hello;
  key: string;
  resume: string;
  grant: TenantGrant | undefined;
  /** A pool member (HELLO pool=): `key` is the pool's, and `resume` the pool key. */
  pooled: boolean;
  /** Bytes the service sent after its last handshake line. */
  rest: Buffer;
  /** Its address, read once at the start (for the log lines of a refusal). */
  peer: string | undefined;
}

/**
 * The version and the secret (or the tenant's), then the key the registration's address
 * belongs to; undefined when the service was refused (the refusal is sent and counted).
 */
export async function authenticate(ctx: RelayContext, tenancy: Tenancy | undefined, socket: Socket, hello: Hello, head: Buffer): Promise<Admitted | undefined> {
  const peer = socket.remoteAddress;
  const refuse = (code: ErrorCode, reason: string, tenant?: string): undefined => void ctx.refusals.reply(socket, code, reason, tenant === undefined ? { peer } : { peer, tenant });
  if (hello.version !== PROTOCOL_VERSION) return refuse('version', `relay speaks protocol ${PROTOCOL_VERSION}, service sent HELLO ${hello.version}`);
  let rest = head;
  let grant: TenantGrant | undefined;
  const gate = { secret: ctx.options.secret, tenancy };
  if (challenges(gate)) {
    const proven = await challenge(gate, hello.tenant, socket, (s, h) => ctx.handshakes.readLine(s, h), head);
    if (!proven.ok) {
      if (proven.code !== 'closed') return refuse(proven.code, proven.reason, hello.tenant);
      socket.destroy();
      return undefined;
    }
    ({ rest, grant } = proven);
  }
  const pooled = hello.pool !== undefined;
  const resume = hello.pool ?? hello.resume ?? newToken();
  // Hashed apart from resume keys: the same 32 digits as a pool key and as a resume key are two addresses.
  const key = leaseKey(pooled ? `pool\0${resume}` : resume, grant?.account.name);
  return { hello, key, resume, grant, pooled, rest, peer };
}
