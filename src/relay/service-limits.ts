import type { TenantAccount, Tenancy, TenantReservations } from '../access/tenancy.js';
import type { LeaseStore } from '../leases/lease-store.js';
import type { ErrorCode } from '../protocol/messages.js';

/** What the limits on services are checked against. */
interface ServiceLimits {
  maxServices: number;
  tenancy: Tenancy | undefined;
  /** The tenants' reservations of ports and of names. */
  reservations: TenantReservations;
  /** Whether the key has a reservation here (a port or a name). */
  reserves: (key: string) => boolean;
  store: LeaseStore;
}

type Refusal = { code: ErrorCode; reason: string };

/**
 * The relay's and the tenant's limits on services, for a registration of `key` when
 * `live` services are registered or registering. The same service on a new control
 * connection (a reconnect before the relay saw the old one die, or a second process
 * with the same resume file), or a new member of a live pool, takes the old one's slot
 * (`replaces`): the newest wins, even at --max-services.
 */
export async function overServiceLimits(limits: ServiceLimits, live: number, key: string, tenant: TenantAccount | undefined, replaces: boolean): Promise<Refusal | undefined> {
  const { maxServices, reservations } = limits;
  if (live - (replaces ? 1 : 0) >= maxServices) {
    return { code: 'limit', reason: `relay has its maximum of ${maxServices} services` };
  }
  if (tenant === undefined) return undefined;
  const reclaims = replaces || limits.reserves(key);
  if (!limits.tenancy!.admitService(tenant, reservations, key, reclaims)) {
    return { code: 'limit', reason: `tenant ${tenant.name} has its maximum of ${tenant.limits.maxServices} services (reservations included)` };
  }
  if (!(await admitFleetWide(limits.store, tenant, key))) {
    return { code: 'limit', reason: `tenant ${tenant.name} has its maximum of ${tenant.limits.maxServices} services across ${limits.store.reach ?? 'the fleet'}` };
  }
  return undefined;
}

/**
 * In a fleet a tenant's services are counted over every node (its keys in etcd, which
 * outlive a departure for the grace, as reservations do here). When the store cannot
 * be asked, the node's own count above stands.
 */
async function admitFleetWide(store: LeaseStore, tenant: TenantAccount, key: string): Promise<boolean> {
  const max = tenant.limits.maxServices;
  if (max === undefined || store.tenantKeys === undefined) return true;
  const keys = await store.tenantKeys(tenant.name, { key, max }).catch(() => undefined);
  if (keys === undefined || keys.filter((other) => other !== key).length < max) return true;
  tenant.refused('services');
  return false;
}
