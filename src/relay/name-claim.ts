import type { Socket } from 'node:net';
import type { Tenancy, TenantAccount } from '../access/tenancy.js';
import { refusalReply } from '../net/lines.js';
import { plainAddress } from '../protocol/addresses.js';
import type { ErrorCode, ServiceMessage } from '../protocol/messages.js';
import { hostOfName, isRegisteredHost, nameAllowed } from '../protocol/names.js';
import type { RelayContext } from './context.js';
import type { PublicPorts } from './public-ports.js';
import type { ServiceSession } from './service-session.js';

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
  // A service that knows names is told a refusal that retrying cannot change apart (docs/protocol.md §18).
  const knows = hello.features?.includes('name') === true;
  if (ctx.options.namesPorts === undefined) return { ok: false, code: knows ? 'bad-name' : 'bad-line', reason: 'this relay has no --names-port: it cannot give names' };
  if (tenant !== undefined && !tenantAllows(tenant, name)) return { ok: false, code: knows ? 'bad-name' : 'limit', reason: outsideTenantReason(name, tenant) };
  const domain = ctx.options.namesDomain ?? publicHostFor(ctx, hello, socket);
  const host = hostOfName(name, domain);
  if (!isRegisteredHost(host) || /^[0-9.]+$/.test(domain)) {
    const reason = `the relay has no DNS domain for names (its public host ${domain.slice(0, 100)} is none): it needs --names-domain`;
    return { ok: false, code: knows ? 'bad-name' : 'limit', reason };
  }
  const holder = ports.nameHolder(host);
  if (holder !== undefined && holder !== key) return { ok: false, code: 'limit', reason: nameTakenReason(host) };
  return { ok: true, host };
}

/** The refusal of a name another key holds: the one the library tells from the settings errors (it may free up). */
export function nameTakenReason(host: string): string {
  return `name ${host} is taken by another service`;
}

/** Whether the tenant's `names` patterns (as loaded now) allow `name`; a tenant without `names` gets none. */
export function tenantAllows(tenant: TenantAccount, name: string): boolean {
  return (tenant.spec.names ?? []).some((pattern) => nameAllowed(name, pattern));
}

export function outsideTenantReason(name: string, tenant: TenantAccount): string {
  return `name ${name} is outside tenant ${tenant.name}'s names`;
}

/**
 * Whether a host a tenant's key holds is still among the tenant's names: the name before
 * the relay's names domain (or its public host), or without either, before any suffix.
 */
export function tenantKeepsHost(ctx: RelayContext, tenant: TenantAccount, host: string): boolean {
  const domain = (ctx.options.namesDomain ?? ctx.options.publicHost)?.toLowerCase().replace(/\.$/, '');
  for (let dot = host.indexOf('.'); dot !== -1; dot = host.indexOf('.', dot + 1)) {
    if (domain !== undefined && host.slice(dot + 1) !== domain) continue;
    if (tenantAllows(tenant, host.slice(0, dot))) return true;
  }
  return false;
}

/**
 * After a reload: the registrations on names their tenant's patterns no longer allow end
 * (ERR bad-name, or limit to a service that does not know names), and such names'
 * reservations end, resetting the clients held there. Returns the sessions ended, whose
 * open tunnels the caller cuts.
 */
export function endNarrowedNames(ctx: RelayContext, sessions: Iterable<ServiceSession>, ports: PublicPorts, tenancy: Tenancy): Set<object> {
  const ended = new Set<object>();
  for (const session of [...sessions]) {
    const { place, tenant } = session;
    if (typeof place !== 'string' || tenant === undefined || tenancy.revoked(session) || tenantKeepsHost(ctx, tenant, place)) continue;
    ended.add(session);
    const refusal = refusalReply(session.features.has('name') ? 'bad-name' : 'limit', outsideTenantReason(place, tenant));
    session.close('its name is no longer among its tenant names after a reload', refusal, 'left');
  }
  for (const name of tenancy.names()) {
    const account = tenancy.account(name)!;
    ports.revokeTenant(name, (host) => tenantKeepsHost(ctx, account, host));
  }
  return ended;
}
