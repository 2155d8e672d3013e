import { RegistrationRefusedError } from '../errors.js';
import { joinHostPort } from '../protocol/addresses.js';
import { PROTOCOL_VERSION, type Feature, type RelayMessage, type ServiceMessage } from '../protocol/messages.js';
import { aclOf, type PublicAddress, type RelayClientOptions } from './options.js';
import { helloWarm } from './warm-sizer.js';

/** Optional messages this library understands; see docs/protocol.md, feature negotiation. */
const LIBRARY_FEATURES: Feature[] = ['rejoin', 'leave', 'superseded', 'probe', 'fleet', 'nodes', 'name'];

export type Hello = ServiceMessage & { kind: 'HELLO' };
export type Registered = RelayMessage & { kind: 'OK' };
export type Refusal = RelayMessage & { kind: 'ERR' };

/**
 * The HELLO that opens a control connection. Once registered, a service asks for the
 * port it had (over `publicPort`), and presents the resume key it was given, so a
 * reconnect keeps its address. A pool member presents its pool key instead, and lists
 * `pool` (only it: a service that is no member has nothing to say in that feature).
 */
export function helloFor(options: RelayClientOptions, previousPort: number | undefined, resume: string | undefined, pool?: string): Hello {
  const port = previousPort ?? options.publicPort;
  const warm = helloWarm(options.prewarm);
  const allow = aclOf(options, 'allow');
  const deny = aclOf(options, 'deny');
  return {
    kind: 'HELLO',
    version: PROTOCOL_VERSION,
    host: options.host,
    ...(port === undefined ? {} : { port }),
    ...(pool !== undefined ? { pool } : resume === undefined ? {} : { resume }),
    ...(warm > 0 ? { warm } : {}),
    // pool and acl only when used: a service without them has nothing to say in those features.
    features: [...LIBRARY_FEATURES, ...(pool === undefined ? [] : (['pool'] as const)), ...(allow.length + deny.length > 0 ? (['acl'] as const) : [])],
    ...(options.tenant === undefined ? {} : { tenant: options.tenant }),
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(allow.length === 0 ? {} : { allow }),
    ...(deny.length === 0 ? {} : { deny }),
  };
}

/** A relay that ignored `name=` (an older one: no `name` in its OK's feat=) registered a plain port instead. */
export function namesMissingError(name: string, relay: string): RegistrationRefusedError {
  return new RegistrationRefusedError('no-names', `the relay at ${relay} cannot give names (its OK lacks feat=name: an older relay), so --name ${name} cannot be served there`);
}

/**
 * A pool member's OK without `pool`: the relay ignored `pool=` (it is older than pools)
 * and gave this process an address of its own, which it must not serve.
 */
export function poolUnknownError(relay: string): RegistrationRefusedError {
  return new RegistrationRefusedError('pool', `the relay at ${relay} is too old for pools (its OK does not list feature pool): upgrade the relay, or run without --pool-file`);
}

/**
 * An OK from a relay that did not list `acl` although this HELLO sent lists: an older
 * relay, which ignored them. The service must not serve open what was asked to be restricted.
 */
export function unhonouredLists(hello: Hello, ok: Registered): RegistrationRefusedError | undefined {
  if ((hello.allow === undefined && hello.deny === undefined) || ok.features?.includes('acl') === true) return undefined;
  return new RegistrationRefusedError('acl', 'the relay does not support --allow/--deny (it did not list feature acl): upgrade the relay, or run without them; not serving open');
}

/** The relay asked for proof of a secret this program was not given. */
export function missingSecretError(): RegistrationRefusedError {
  return new RegistrationRefusedError('auth', 'authentication failed: the relay requires a secret (--secret or RELAY_SECRET)');
}

/**
 * What an ERR on the control connection means for good, or undefined for a refusal a
 * later attempt may get past (a full relay, say): then the library reconnects.
 */
export function refusalError(msg: Refusal): RegistrationRefusedError | undefined {
  switch (msg.code) {
    case 'superseded':
      return new RegistrationRefusedError('superseded', 'superseded: another process registered with the same resume key');
    case 'auth':
      // The relay's own text for auth already says "authentication failed".
      return new RegistrationRefusedError('auth', /authentication failed/.test(msg.text) ? msg.text : `authentication failed: ${msg.text}`);
    case 'version':
      return new RegistrationRefusedError('version', `protocol version mismatch: ${msg.text}`);
    case 'bad-name':
      return new RegistrationRefusedError('name', `the relay refuses the name: ${msg.text}`);
    default:
      return undefined;
  }
}

/** The public address an OK gives. */
export function publicAddressOf(msg: Registered): PublicAddress {
  return { host: msg.host, port: msg.port, address: joinHostPort(msg.host, msg.port) };
}
