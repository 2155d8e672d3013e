import type { RelayOptions } from '../config/defaults.js';
import { UsageError } from '../errors.js';
import { loadTenants } from '../access/tenants-file.js';

/** --tenants at start: a file that does not load stops the relay with one line (exit 2). */
export function checkTenantsFlags(options: RelayOptions): void {
  if (options.tenantsFile === undefined) return;
  if (options.secret !== undefined) {
    throw new UsageError('--secret (or RELAY_SECRET) and --tenants do not go together: each tenant has its own secrets');
  }
  loadTenants(options.tenantsFile, options.ports ?? { first: options.port + 1, last: 65535 });
}
