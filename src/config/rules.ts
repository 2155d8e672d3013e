/**
 * The one place every limit and duration is checked, whether it comes from a command
 * line, the environment, a config file or a library caller, so a value the code cannot
 * honour is refused with one clear line instead of misbehaving later.
 */
import { createSecureContext } from 'node:tls';
import type { RelayOptions, RelayTunable } from './defaults.js';
import type { DerivedLimits } from './limits.js';
import { UsageError } from '../errors.js';
import { clientHost } from '../protocol/names.js';
import { parseCidrList, type Cidr } from '../protocol/cidr.js';

/** Node fires a timer at once when its delay is above this (2^31-1 ms, about 24.8 days). */
export const MAX_TIMER_MS = 2_147_483_647;

/** A limit (a whole number) or a duration (ms in the library, seconds on the command line). */
interface Rule {
  flag: string;
  kind: 'count' | 'duration';
  min: number;
  max: number;
}

const count = (flag: string, min: number, max = Number.MAX_SAFE_INTEGER): Rule => ({ flag, kind: 'count', min, max });
const duration = (flag: string, minMs: number, maxMs = MAX_TIMER_MS): Rule => ({ flag, kind: 'duration', min: minMs, max: maxMs });

/** The relay's tunables, keyed by option, each with the flag that sets it. */
export const RELAY_RULES: Readonly<Record<RelayTunable, Rule>> = {
  maxServices: count('--max-services', 1),
  maxClientsPerService: count('--max-clients', 1),
  maxPendingPerService: count('--max-pending', 1),
  maxTunnels: count('--max-tunnels', 1),
  maxWarmPerService: count('--max-warm', 0),
  maxWarmTotal: count('--max-warm-total', 0),
  handshakeTimeoutMs: duration('--handshake-timeout', 1),
  dialbackTimeoutMs: duration('--dialback-timeout', 1),
  heartbeatMs: duration('--heartbeat', 10, 3_600_000),
  resumeGraceMs: duration('--resume-grace', 0),
  drainTimeoutMs: duration('--drain-timeout', 0),
  holdTimeoutMs: duration('--hold-timeout', 1),
  probeIntervalMs: duration('--probe', 0),
  maxClientsPerIp: count('--max-clients-per-ip', 0),
  maxConnectRate: count('--max-connect-rate', 0, 1_000_000),
  idleTimeoutMs: duration('--idle-timeout', 0),
};

/** The service programs' own tunables. */
export const SERVICE_RULES = {
  prewarm: count('--prewarm', 0, 1000),
  drainTimeoutMs: duration('--drain-timeout', 0),
  checkIntervalMs: duration('--check-interval', 0, 3_600_000),
} as const;

/** The relay program's own settings, not the library's: how many worker processes it runs. */
export const RELAY_PROGRAM_RULES = {
  workers: count('--workers', 1, 1024),
} as const;

/** Library-only timeouts, named by the option that holds them. */
export const LIBRARY_TIMEOUT = duration('', 1);

const seconds = (ms: number): string => String(ms >= 1000 ? Math.floor(ms / 1000) : ms / 1000);
const upTo = (max: number): string => (max === Number.MAX_SAFE_INTEGER ? ' up' : ` to ${max}`);

/**
 * A flag's value (seconds for a duration) as the number the code uses (ms for a
 * duration), or a UsageError naming the flag and its range.
 */
export function flagValue(rule: Rule, raw: unknown): number {
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
  if (rule.kind === 'count') {
    if (Number.isInteger(n) && n >= rule.min && n <= rule.max) return n;
    throw new UsageError(`${rule.flag} must be a whole number from ${rule.min}${upTo(rule.max)}, got "${String(raw)}"`);
  }
  const ms = Math.round(n * 1000);
  if (Number.isFinite(n) && ms >= rule.min && ms <= rule.max) return ms;
  throw new UsageError(`${rule.flag} must be from ${seconds(rule.min)} to ${seconds(rule.max)} seconds, got "${String(raw)}"`);
}

/** The limits this machine bounds (src/config/limits.ts), each with the flag that sets it. */
export const MACHINE_BOUND = ['maxClientsPerService', 'maxPendingPerService', 'maxTunnels', 'maxWarmTotal'] as const;

/**
 * A count flag this machine bounds: as flagValue, except that a whole number above what
 * the machine can hold (`limits`, when measured) is lowered to it, and `lowered` gets a
 * phrase quoting what was written. Lowered rather than refused: a config file shared by
 * machines of different sizes (or kept across a change of `ulimit -n`) still starts
 * everywhere, each at its own maximum, and clients beyond the descriptors left could not
 * be served anyway (each would fail with EMFILE, taking control connections with it).
 */
export function machineBoundValue(key: (typeof MACHINE_BOUND)[number], raw: unknown, limits: DerivedLimits, lowered: Lowered[]): number {
  const rule = RELAY_RULES[key];
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
  const most = limits[key];
  if (!limits.measured || !Number.isInteger(n) || n <= most) return flagValue(rule, raw);
  lowered.push({ written: `${rule.flag} ${String(raw)}`, to: most });
  return most;
}

/** A limit machineBoundValue lowered: the flag and value as written, and what is used instead. */
export interface Lowered {
  written: string;
  to: number;
}

/** The one warning for every limit machineBoundValue lowered; undefined when none was. */
export function loweredWarning(lowered: readonly Lowered[], limits: DerivedLimits): string | undefined {
  if (lowered.length === 0) return undefined;
  const list = (parts: string[]): string => parts.join(' and ');
  const verb = lowered.length === 1 ? 'is' : 'are';
  const what = `${list(lowered.map((l) => l.written))} ${verb} above what this machine can hold (${limits.basis})`;
  return `${what}: using ${list(lowered.map((l) => String(l.to)))} instead; raise the open-file limit (ulimit -n) or the memory limit to allow more`;
}

/** Throws a UsageError naming the option unless its value (ms for a duration) keeps the rule. */
export function checkOption(name: string, rule: Rule, value: unknown): void {
  const n = value as number;
  const ok = typeof value === 'number' && (rule.kind === 'count' ? Number.isInteger(n) : Number.isFinite(n)) && n >= rule.min && n <= rule.max;
  if (!ok) {
    const unit = rule.kind === 'count' ? 'a whole number' : 'a number of milliseconds';
    throw new UsageError(`${name} must be ${unit} from ${rule.min}${upTo(rule.max)}, got ${String(value)}`);
  }
}

/** Throws a UsageError naming the option unless it is a port number from `min` to 65535. */
export function checkPort(name: string, value: unknown, min: number): void {
  checkOption(name, count(name, min, 65535), value);
}

/** A rule over two options at once, phrased for the command line (`flags`) and for library callers (`keys`). */
interface CombinedRule {
  broken: (options: Pick<RelayOptions, 'port' | 'ports' | 'secret' | 'tenantsFile'>) => boolean;
  flags: string;
  keys: string;
}

const COMBINED_RULES: readonly CombinedRule[] = [
  {
    broken: (o) => o.ports === undefined && o.port === 0,
    flags: 'PORT 0 (any free port) needs --ports A-B for the public ports',
    keys: 'ports is required with port 0: the public ports cannot follow a port not yet chosen',
  },
  {
    broken: (o) => o.ports === undefined && o.port === 65535,
    flags: 'PORT 65535 leaves no public ports; give --ports',
    keys: 'ports is required with port 65535: no port follows it',
  },
  {
    broken: (o) => o.secret !== undefined && o.tenantsFile !== undefined,
    flags: '--secret (or RELAY_SECRET) and --tenants do not go together: each tenant has its own secrets',
    keys: 'secret and tenantsFile (--secret and --tenants) do not go together: each tenant has its own secrets',
  },
];

/** Throws a UsageError for the first combination of options that cannot work, named as `naming` says. */
export function checkCombinations(options: Pick<RelayOptions, 'port' | 'ports' | 'secret' | 'tenantsFile'>, naming: 'flags' | 'keys'): void {
  const broken = COMBINED_RULES.find((rule) => rule.broken(options));
  if (broken !== undefined) throw new UsageError(broken[naming]);
}

/** Checks a relay's options (defaults already applied); throws a UsageError naming the first bad one. */
export function validateRelayOptions(options: RelayOptions): RelayOptions {
  checkPort('port', options.port, 0);
  if (options.dataPort !== undefined) checkPort('dataPort', options.dataPort, 0);
  for (const [key, rule] of Object.entries(RELAY_RULES) as [RelayTunable, Rule][]) checkOption(key, rule, options[key]);
  checkCombinations(options, 'keys');
  const { ports } = options;
  if (ports !== undefined) {
    checkPort('ports.first', ports.first, 1);
    checkPort('ports.last', ports.last, 1);
    if (ports.first > ports.last) throw new UsageError(`ports.first ${ports.first} is above ports.last ${ports.last}`);
  }
  checkNames(options);
  for (const key of ['allow', 'deny', 'publicProxyFrom'] as const) cidrsOption(key, options[key]);
  if (options.secret === '') throw new UsageError('secret must not be empty (leave it out for open registration)');
  if (options.tlsFiles !== undefined && options.tls === undefined) throw new UsageError('tlsFiles needs tls: the certificate and key read from those files');
  if (options.tls !== undefined) {
    try {
      createSecureContext(options.tls);
    } catch (err) {
      throw new UsageError(`tls.cert and tls.key are not a usable PEM certificate and key (${(err as Error).message})`, { cause: err });
    }
  }
  return options;
}

/** The names ports and domain: real ports, none shared with the control or data port, a host name for a domain. */
export function checkNames(options: Pick<RelayOptions, 'port' | 'dataPort' | 'namesPorts' | 'namesDomain'>): void {
  const { namesPorts, namesDomain } = options;
  if (namesPorts === undefined) {
    if (namesDomain !== undefined) throw new UsageError('namesDomain (--names-domain) needs namesPorts (--names-port)');
    return;
  }
  if (!Array.isArray(namesPorts) || namesPorts.length === 0) throw new UsageError('namesPorts (--names-port) must list at least one port');
  namesPorts.forEach((port, i) => checkPort(`namesPorts[${i}] (--names-port)`, port, 1));
  const others = [options.port, options.dataPort];
  const clash = namesPorts.find((port, i) => others.includes(port) || namesPorts.indexOf(port) !== i);
  if (clash !== undefined) throw new UsageError(`--names-port ${clash} is given twice, or is also the control or data port`);
  if (namesDomain !== undefined && (clientHost(namesDomain) !== namesDomain.toLowerCase().replace(/\.$/, '') || /^[0-9.]+$/.test(namesDomain))) {
    throw new UsageError(`--names-domain must be a DNS name such as example.com, got "${String(namesDomain).slice(0, 80)}"`);
  }
}

/** A list option of CIDR ranges (allow, deny, publicProxyFrom) as ranges; a UsageError naming it and the bad range. */
export function cidrsOption(key: string, list: readonly string[] | undefined): Cidr[] {
  if (list === undefined) return [];
  if (!Array.isArray(list) || !list.every((item) => typeof item === 'string')) throw new UsageError(`${key} must be a list of CIDR strings`);
  if (list.length === 0) return [];
  const parsed = parseCidrList(list.join(','));
  if (typeof parsed === 'string') throw new UsageError(`${key}: ${parsed}`);
  return parsed;
}
