import { readFileSync } from 'node:fs';
import type { PortRange } from '../config/defaults.js';
import { UsageError } from '../errors.js';
import { MAX_CIDRS, parseCidrList, type AccessList, type Cidr } from '../protocol/cidr.js';
import { TENANT_NAME, TENANT_NAME_RULE } from '../protocol/messages.js';
import { isServiceName, SERVICE_NAME_RULE } from '../protocol/names.js';

/** Limits of one tenant; a limit left out is only bounded by the relay-wide one. */
export interface TenantLimits {
  /** Live registrations plus the reservations held for its departed services. */
  readonly maxServices?: number;
  /** Open public clients over all its services. */
  readonly maxClients?: number;
  /** Concurrent public clients from one address; enforced by the per-address limiter, not here. */
  readonly maxClientsPerIp?: number;
}

/** One entry of the tenants file, checked. */
export interface TenantSpec {
  readonly name: string;
  readonly secrets: readonly string[];
  /** The public ports it may get, as ranges inside the relay's; the relay's whole range when the file names none. */
  readonly ports: readonly PortRange[];
  readonly limits: TenantLimits;
  /** Patterns of the names it may take on the names ports (`www.alice`, `*.alice`); none when the file lists none. */
  readonly names?: readonly string[];
  /** Who may connect to its ports (`allow`, `deny`), within the relay's lists; undefined when it has neither. */
  readonly access?: AccessList;
}

const TENANT_KEYS = new Set(['name', 'secrets', 'ports', 'maxServices', 'maxClients', 'maxClientsPerIp', 'names', 'allow', 'deny']);
const LIMIT_KEYS = ['maxServices', 'maxClients', 'maxClientsPerIp'] as const;
/** Most secrets one tenant may list: a proof is checked against this many, whoever asks. */
export const MAX_SECRETS = 16;
const MAX_SECRET_LENGTH = 1024;
const MAX_PORT_PARTS = 1024;
const MAX_NAME_PATTERNS = 1024;

/**
 * The tenants in a tenants file's text, checked against the relay's public range;
 * throws a UsageError with one line that names the problem. The message never quotes
 * the file itself: it holds secrets.
 */
export function parseTenants(text: string, relayRange: PortRange): TenantSpec[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    // V8's message quotes the text around the error, which may be a secret: keep only the position.
    const at = /position (\d+)/.exec((err as Error).message)?.[1];
    throw new UsageError(`not valid JSON${at === undefined ? '' : ` (at character ${at})`}`);
  }
  if (!isObject(parsed)) throw new UsageError('must be a JSON object { "tenants": [ ... ] }');
  for (const key of Object.keys(parsed)) if (key !== 'tenants') throw new UsageError(`unknown key "${printable(key)}" (only "tenants")`);
  const list = parsed['tenants'];
  if (!Array.isArray(list)) throw new UsageError('"tenants" must be a list');
  const names = new Set<string>();
  return list.map((entry: unknown, index) => {
    const tenant = parseTenant(entry, index, relayRange);
    if (names.has(tenant.name)) throw new UsageError(`tenant "${tenant.name}" is listed twice`);
    names.add(tenant.name);
    return tenant;
  });
}

/** Reads and checks a tenants file; the UsageError names the file. */
export function loadTenants(file: string, relayRange: PortRange): TenantSpec[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`tenants file ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    return parseTenants(text, relayRange);
  } catch (err) {
    throw new UsageError(`tenants file ${file}: ${(err as Error).message}`);
  }
}

function parseTenant(entry: unknown, index: number, relayRange: PortRange): TenantSpec {
  if (!isObject(entry)) throw new UsageError(`tenant #${index + 1} must be an object`);
  const name = entry['name'];
  if (typeof name !== 'string' || !TENANT_NAME.test(name)) {
    throw new UsageError(`tenant #${index + 1}: "name" must be ${TENANT_NAME_RULE}`);
  }
  const where = `tenant "${name}"`;
  for (const key of Object.keys(entry)) if (!TENANT_KEYS.has(key)) throw new UsageError(`${where}: unknown key "${printable(key)}"`);
  const secrets = entry['secrets'];
  if (!Array.isArray(secrets) || secrets.length === 0 || secrets.length > MAX_SECRETS) {
    throw new UsageError(`${where}: "secrets" must be a list of 1 to ${MAX_SECRETS} secrets`);
  }
  secrets.forEach((secret: unknown, i) => {
    if (typeof secret !== 'string' || secret.length === 0 || secret.length > MAX_SECRET_LENGTH) {
      throw new UsageError(`${where}: secret #${i + 1} must be a non-empty string of up to ${MAX_SECRET_LENGTH} characters`);
    }
  });
  const limits: Record<string, number> = {};
  for (const key of LIMIT_KEYS) {
    const value = entry[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new UsageError(`${where}: "${key}" must be a whole number from 1 up`);
    limits[key] = value;
  }
  const ports = entry['ports'] === undefined ? [relayRange] : parsePorts(entry['ports'], where, relayRange);
  const names = entry['names'] === undefined ? undefined : parseNames(entry['names'], where);
  const allow = parseCidrs(entry['allow'], where, 'allow');
  const deny = parseCidrs(entry['deny'], where, 'deny');
  const access = allow.length + deny.length === 0 ? {} : { access: { allow, deny } };
  return { name, secrets: secrets as string[], ports, limits, ...(names === undefined ? {} : { names }), ...access };
}

/** `["*.alice", "www.alice"]`: each pattern a name a service may ask for (`*` and `*.LABELS` are wildcards). */
function parseNames(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || value.length > MAX_NAME_PATTERNS || !value.every((pattern) => typeof pattern === 'string' && isServiceName(pattern))) {
    throw new UsageError(`${where}: "names" must be a list of up to ${MAX_NAME_PATTERNS} names or patterns, each ${SERVICE_NAME_RULE}`);
  }
  return value as string[];
}

/** `"allow"`/`"deny"`: a list of CIDR strings (or one string of them, comma-separated). */
function parseCidrs(value: unknown, where: string, key: string): Cidr[] {
  if (value === undefined) return [];
  const shape = `${where}: "${key}" must be a list of up to ${MAX_CIDRS} CIDR ranges like ["10.0.0.0/8", "2001:db8::/32"]`;
  const text = typeof value === 'string' ? value : Array.isArray(value) && value.every((part) => typeof part === 'string') ? value.join(',') : undefined;
  if (text === undefined || text.trim() === '') throw new UsageError(shape);
  const list = parseCidrList(text);
  if (typeof list === 'string') throw new UsageError(`${where}: "${key}": ${list.slice(0, 120)}`);
  return list;
}

/** "20000-20099", "20000,20005-20010" or a single port number, each inside the relay's range. */
function parsePorts(value: unknown, where: string, relayRange: PortRange): PortRange[] {
  const text = typeof value === 'number' ? String(value) : value;
  const shape = `${where}: "ports" must be a port, a range A-B or a list like "20000,20005-20010"`;
  if (typeof text !== 'string' || text.trim() === '') throw new UsageError(shape);
  const parts = text.split(',');
  if (parts.length > MAX_PORT_PARTS) throw new UsageError(`${where}: "ports" has more than ${MAX_PORT_PARTS} parts`);
  return parts.map((part) => {
    const match = /^\s*(\d{1,5})(?:\s*-\s*(\d{1,5}))?\s*$/.exec(part);
    if (match === null) throw new UsageError(shape);
    const first = Number(match[1]);
    const last = Number(match[2] ?? match[1]);
    if (first > last) throw new UsageError(`${where}: ports ${first}-${last} run backwards`);
    if (first < relayRange.first || last > relayRange.last) {
      throw new UsageError(`${where}: ports ${part.trim()} lie outside the relay's public ports ${relayRange.first}-${relayRange.last} (--ports)`);
    }
    return { first, last };
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A key from the file, made safe to show on one line. */
function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 40 ? `${clean.slice(0, 40)}...` : clean;
}
