import type { Socket } from 'node:net';
import type { TenantAccount } from '../access/tenancy.js';
import { plainAddress } from '../protocol/addresses.js';
import type { ErrorCode, ServiceMessage } from '../protocol/messages.js';
import { hostOfName, isRegisteredHost, nameAllowed } from '../protocol/names.js';
import type { RelayContext } from './context.js';
import type { PublicPorts } from './public-ports.js';

type Hello = ServiceMessage & { kind: 'HELLO' };

/** The public host a registration is told: --public-host, else the name the service dialed, else the address it reached. */
export function publicHostFor(ctx: RelayContext, hello: Hello, socket: Socket): string {
  return ctx.options.publicHost ?? hello.host ?? plainAddress(socket.localAddress ?? 'localhost');
}

/** The host a registration's `name=` gets (undefined without one), or the refusal (docs/protocol.md §18). */
export type NameClaim = { ok: true; host: string | undefined } | { ok: false; code: ErrorCode; reason: string };

/**
 * Whether a HELLO may have the name it asks for: the relay must have names ports, a
 * tenant's names patterns must allow it, and no other key may hold it (live, being
 * claimed or reserved for its grace). Without tenants names are first come, first
 * served, and kept by the key as its port would be.
 */
export function claimName(ctx: RelayContext, ports: PublicPorts, hello: Hello, socket: Socket, key: string, tenant: TenantAccount | undefined): NameClaim {
  const { name } = hello;
  if (name === undefined) return { ok: true, host: undefined };
  if (ctx.options.namesPorts === undefined) return { ok: false, code: 'bad-line', reason: 'this relay has no --names-port: it cannot give names' };
  if (tenant !== undefined && !(tenant.spec.names ?? []).some((pattern) => nameAllowed(name, pattern))) {
    return { ok: false, code: 'limit', reason: `name ${name} is outside tenant ${tenant.name}'s names` };
  }
  const domain = ctx.options.namesDomain ?? publicHostFor(ctx, hello, socket);
  const host = hostOfName(name, domain);
  if (!isRegisteredHost(host) || /^[0-9.]+$/.test(domain)) {
    return { ok: false, code: 'limit', reason: `the relay has no DNS domain for names (its public host ${domain.slice(0, 100)} is none): it needs --names-domain` };
  }
  const holder = ports.nameHolder(host);
  if (holder !== undefined && holder !== key) return { ok: false, code: 'limit', reason: `name ${host} is taken by another service` };
  return { ok: true, host };
}
