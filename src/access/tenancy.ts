import { createHash, randomBytes } from 'node:crypto';
import type { PortRange } from '../config/defaults.js';
import type { Logger } from '../log.js';
import { verifyProof } from '../protocol/auth.js';
import type { TenantClientsShare } from '../leases/lease-store.js';
import type { ClaimScope } from '../leases/port-pool.js';
import { loadTenants, MAX_SECRETS, type TenantLimits, type TenantSpec } from './tenants-file.js';

/**
 * A tenant as the running relay sees it: its current entry of the tenants file and
 * what it uses now. One object per tenant name for as long as the name is in the file,
 * so a reload changes its limits without losing count.
 */
export class TenantAccount {
  readonly name: string;
  #spec: TenantSpec;
  /** Live registrations plus registrations in flight. */
  services = 0;
  #clients = 0;
  /** Set once a reload removed it: its registrations and tunnels are being ended. */
  removed = false;
  /** Its open public clients on the other nodes of a fleet and workers of this one (as last seen there); 0 on a single relay. */
  elsewhere: () => number = () => 0;
  /** Tells the other workers and nodes when its count changed (they count it in maxClients). */
  clientsChanged: () => void = () => {};
  /** What its quotas refused, by quota: 'services', 'ports', 'clients'. */
  readonly refusals = new Map<string, number>();

  constructor(spec: TenantSpec) {
    this.name = spec.name;
    this.#spec = spec;
  }

  get spec(): TenantSpec {
    return this.#spec;
  }

  set spec(spec: TenantSpec) {
    this.#spec = spec;
  }

  /** Open public clients over all its services. */
  get clients(): number {
    return this.#clients;
  }

  set clients(count: number) {
    this.#clients = count;
    if (this.#spec.limits.maxClients !== undefined) this.clientsChanged();
  }

  /** The limits of the file as last loaded; `maxClientsPerIp` is for the per-address limiter. */
  get limits(): TenantLimits {
    return this.#spec.limits;
  }

  get scope(): ClaimScope {
    return { tenant: this.name, ports: this.#spec.ports };
  }

  /** False (and counted) when one more public client would put it over maxClients. */
  admitsClient(): boolean {
    const max = this.#spec.limits.maxClients;
    if (max === undefined || this.clients + this.elsewhere() < max) return true;
    this.refused('clients');
    return false;
  }

  refused(quota: 'services' | 'ports' | 'clients'): void {
    this.refusals.set(quota, (this.refusals.get(quota) ?? 0) + 1);
  }
}

/** Who proved what: the tenant, and which of its secrets (a fingerprint; the secret stays in the file). */
export interface TenantGrant {
  account: TenantAccount;
  fingerprint: string;
}

export interface TenantFigures {
  name: string;
  services: number;
  reservations: number;
  clients: number;
  refusals: ReadonlyMap<string, number>;
}

/** Something a tenant's registration owns: a session, or a tunnel through it. */
type Granted = object;

const fingerprint = (secret: string): string => createHash('sha256').update(secret).digest('hex');

/** The reservations a tenant's quota counts (its departed services' ports and names), and the means to end one. */
export interface TenantReservations {
  reservationsOf(tenant: string): number;
  /** Ends the tenant's oldest reservation that is not `key`'s; false when there is none. */
  evictOldest(key: string, tenant: string): boolean;
}

/**
 * The tenants of a relay started with `--tenants FILE`: checks a service's proof for
 * the tenant it names, applies its quotas, remembers which secret each registration
 * proved, and on a reload says which registrations lost their right to be here.
 */
export class Tenancy {
  readonly #file: string;
  readonly #range: PortRange;
  readonly #log: Logger;
  #accounts = new Map<string, TenantAccount>();
  readonly #grants = new WeakMap<Granted, TenantGrant>();
  /** Verified against in place of secrets a tenant does not have, so every check costs the same work. */
  readonly #decoy = randomBytes(32).toString('hex');

  /**
   * `specs`: the file's entries, when whoever checked the command line has read it
   * already; else the file is read now (a UsageError names the problem).
   */
  constructor(file: string, range: PortRange, log: Logger, specs: TenantSpec[] = loadTenants(file, range)) {
    this.#file = file;
    this.#range = range;
    this.#log = log;
    this.#install(specs);
  }

  has(name: string): boolean {
    return this.#accounts.has(name);
  }

  /** A tenant's entry as last loaded (its allow/deny lists are checked at the doors). */
  specOf(name: string): TenantSpec | undefined {
    return this.#accounts.get(name)?.spec;
  }

  /** A tenant's limits as last loaded, for the checks made outside this module (per address). */
  /** The tenants in the file now. */
  names(): string[] {
    return [...this.#accounts.keys()];
  }

  /** The account of a tenant in the file now, if it is there. */
  account(name: string): TenantAccount | undefined {
    return this.#accounts.get(name);
  }

  limitsOf(name: string): TenantLimits | undefined {
    return this.#accounts.get(name)?.limits;
  }

  /**
   * The grant for a PROOF answering `nonce`, or undefined: an unknown tenant, no tenant
   * and a wrong secret all end here, after the same work, so a refusal never says
   * which tenant names exist.
   */
  verify(name: string | undefined, nonce: string, mac: string): TenantGrant | undefined {
    const account = name === undefined ? undefined : this.#accounts.get(name);
    const secrets = account?.spec.secrets ?? [];
    let proven: string | undefined;
    // Always the same number of checks (decoys make up the rest), so the time taken
    // tells neither whether the tenant exists, nor how many secrets it has, nor which matched.
    for (let i = 0; i < MAX_SECRETS; i++) {
      const secret = secrets[i];
      const ok = verifyProof(secret ?? this.#decoy, nonce, mac);
      if (ok && secret !== undefined && proven === undefined) proven = secret;
    }
    if (account === undefined || proven === undefined) return undefined;
    return { account, fingerprint: fingerprint(proven) };
  }

  /** Records what a session (or one of its tunnels) was granted, for revocation. */
  bind(owner: Granted, grant: TenantGrant): void {
    this.#grants.set(owner, grant);
  }

  /** True when a reload took away the tenant or the secret this owner was admitted with. */
  revoked(owner: Granted): boolean {
    const grant = this.#grants.get(owner);
    return grant !== undefined && !Tenancy.valid(grant);
  }

  /** False once a reload took away the tenant or the secret of this grant. */
  static valid(grant: TenantGrant): boolean {
    return !grant.account.removed && grant.account.spec.secrets.some((secret) => fingerprint(secret) === grant.fingerprint);
  }

  /**
   * Room for one more service of this tenant (quota: live registrations plus its
   * reservations)? At the quota, its own oldest reservation is ended for the newcomer,
   * never another tenant's. `reclaims`: the newcomer takes over a live registration or
   * its own reservation, so it adds nothing.
   */
  admitService(account: TenantAccount, pool: TenantReservations, key: string, reclaims: boolean): boolean {
    const max = account.limits.maxServices;
    if (max === undefined || reclaims) return true;
    while (account.services + pool.reservationsOf(account.name) >= max) {
      if (pool.evictOldest(key, account.name)) continue;
      account.refused('services');
      return false;
    }
    return true;
  }

  /**
   * Reads the file again. A file that does not load is reported in one line and the
   * old tenants stay. Returns the tenants removed (their accounts are marked), or
   * undefined when nothing changed.
   */
  reload(): string[] | undefined {
    let specs: TenantSpec[];
    try {
      specs = loadTenants(this.#file, this.#range);
    } catch (err) {
      this.#log.error({ tenantsFile: this.#file, reason: (err as Error).message }, 'tenants file not reloaded: keeping the tenants already loaded');
      return undefined;
    }
    const removed = [...this.#accounts.keys()].filter((name) => !specs.some((spec) => spec.name === name));
    for (const name of removed) this.#accounts.get(name)!.removed = true;
    this.#install(specs);
    this.#log.info({ tenantsFile: this.#file, tenants: specs.length, removed }, 'tenants file reloaded');
    return removed;
  }

  figures(pool: TenantReservations): TenantFigures[] {
    return [...this.#accounts.values()].map((account) => ({
      name: account.name,
      services: account.services,
      reservations: pool.reservationsOf(account.name),
      clients: account.clients,
      refusals: account.refusals,
    }));
  }

  #install(specs: TenantSpec[]): void {
    const accounts = new Map<string, TenantAccount>();
    for (const spec of specs) {
      const account = this.#accounts.get(spec.name) ?? new TenantAccount(spec);
      account.spec = spec;
      account.elsewhere = () => this.#clientsElsewhere(account.name);
      account.clientsChanged = this.#clientsChanged;
      accounts.set(spec.name, account);
    }
    this.#accounts = accounts;
  }

  #clientsElsewhere: (tenant: string) => number = () => 0;
  #clientsChanged: () => void = () => {};

  /**
   * In a fleet or with several workers: publishes this process's open clients per
   * tenant and counts the others' in each tenant's maxClients (`share` is the lease store's).
   */
  shareClients(share: (local: () => ReadonlyMap<string, number>) => TenantClientsShare): void {
    const shared = share(() => new Map([...this.#accounts].map(([name, account]) => [name, account.clients])));
    this.#clientsElsewhere = (tenant) => shared.elsewhere(tenant);
    this.#clientsChanged = () => shared.changed();
    for (const account of this.#accounts.values()) {
      account.elsewhere = () => this.#clientsElsewhere(account.name);
      account.clientsChanged = this.#clientsChanged;
    }
  }
}
