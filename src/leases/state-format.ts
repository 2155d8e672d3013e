import { TENANT_NAME } from '../protocol/messages.js';
import { isRegisteredHost } from '../protocol/names.js';
import { placeOf, type LeaseRecord, type Place } from './lease-store.js';

/** Format version of the state file; a file of another version is read as corrupt. */
export const STATE_VERSION = 1;

const KEY = /^[0-9a-f]{64}$/;

/** What a state file's text holds: the valid leases, and how many entries were dropped for which reason. */
export interface ParsedState {
  records: LeaseRecord[];
  /** Reason → how many entries; empty when every entry was valid. */
  dropped: Record<string, number>;
}

/** The text of a state file holding these leases. */
export function formatState(records: LeaseRecord[]): string {
  return JSON.stringify({ version: STATE_VERSION, leases: records }) + '\n';
}

/**
 * The leases in a state file's text, or undefined when it is not a state file this
 * relay wrote at all. One bad entry costs only itself: the first entry for a port or
 * a key wins, later ones are dropped as duplicates.
 */
export function parseState(text: string): ParsedState | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  const state = parsed as { version?: unknown; leases?: unknown };
  if (typeof state !== 'object' || state === null || state.version !== STATE_VERSION || !Array.isArray(state.leases)) return undefined;
  const records: LeaseRecord[] = [];
  const dropped: Record<string, number> = {};
  const places = new Set<Place>();
  const keys = new Set<string>();
  for (const item of state.leases as unknown[]) {
    const record = leaseOf(item);
    const why =
      typeof record === 'string' ? record : places.has(placeOf(record)) ? (record.name === undefined ? 'duplicate port' : 'duplicate name') : keys.has(record.key) ? 'duplicate key' : undefined;
    if (why !== undefined) {
      dropped[why] = (dropped[why] ?? 0) + 1;
      continue;
    }
    const lease = record as LeaseRecord;
    places.add(placeOf(lease));
    keys.add(lease.key);
    records.push(lease);
  }
  return { records, dropped };
}

/**
 * One entry as a lease, or what is wrong with it (never the key itself: it names the lease).
 * An entry with a `name` is a name's lease, with or without a `port`: the first relays
 * with names gave each name a slot port, which a name no longer takes.
 */
function leaseOf(item: unknown): LeaseRecord | string {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) return 'not an object';
  const { key, port, until, tenant, name } = item as Record<string, unknown>;
  if (typeof key !== 'string' || !KEY.test(key)) return 'bad key';
  if (name === undefined && (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)) return 'bad port';
  if (!(until === null || (typeof until === 'number' && Number.isFinite(until)))) return 'bad until';
  if (!(tenant === undefined || (typeof tenant === 'string' && TENANT_NAME.test(tenant)))) return 'bad tenant';
  if (!(name === undefined || (typeof name === 'string' && isRegisteredHost(name)))) return 'bad name';
  const base = { key, until, ...(tenant === undefined ? {} : { tenant }) };
  return typeof name === 'string' ? { ...base, name } : { ...base, port: port as number };
}
