import { ACL_HELLO_OPTIONS } from './acl-options.js';
import { isHost, parsePort, splitHostPort } from './addresses.js';
import {
  FEATURES,
  MAX_NODES,
  PROTOCOL_VERSION,
  TENANT_NAME,
  TENANT_NAME_RULE,
  isErrorCode,
  type ErrorCode,
  type Feature,
  type Message,
  type ParseResult,
  type RelayMessage,
  type ServiceMessage,
} from './messages.js';
import { parseServiceName, SERVICE_NAME_RULE, splitPublicAddress } from './names.js';
import { poolOption, POOL_VERBS } from './pool-lines.js';

/** Line to message: every rule a line must follow to be a message of protocol.md, and the exact reason when it does not (HELLO's allow=/deny= in acl-options.ts). */

/** Most names a feat= list may carry; more is a malformed line, not a longer loop. */
const MAX_FEATURES = 32;
const FEATURE_NAME = /^[a-z][a-z0-9-]{0,31}$/;

const SERVICE_KINDS: ReadonlySet<string> = new Set<ServiceMessage['kind']>(['HELLO', 'PROOF', 'PONG', 'PING', 'LEAVE', 'DRAIN', 'HEALTH', 'DECLINE', 'DATA', 'IDLE']);
/** The verbs of the messages a relay sends: a first line that starts with one is a relay's, if perhaps a newer one's. */
export const RELAY_KINDS: ReadonlySet<string> = new Set<RelayMessage['kind']>(['AUTH', 'OK', 'CONNECT', 'CLIENT', 'PING', 'PONG', 'SHUTDOWN', 'REJOIN', 'PROBE', 'NODES', 'PROBED', 'ERR']);

const TOKEN = /^[0-9a-f]{32}$/;
const MAC = /^[0-9a-f]{64}$/;
const ADDRESS = /^[0-9A-Fa-f:.]{2,45}$/;
const HTTP_REQUEST = /^[A-Z]{3,10} \S+ HTTP\/\d/;

type Hello = ServiceMessage & { kind: 'HELLO' };
type Ok = RelayMessage & { kind: 'OK' };
/** Parses the words of a line whose first word is the verb it was looked up by. */
type VerbParser = (words: string[]) => ParseResult;
/** Checks one key=value option and sets it on the message; returns what is wrong, if anything. */
type OptionRule<M> = (options: ReadonlyMap<string, string>, msg: M) => string | undefined;

const fail = (code: ErrorCode, reason: string): ParseResult => ({ ok: false, code, reason });

/** Splits `key=value` options; unknown keys are kept so newer peers can add some. */
function parseOptions(words: string[]): Map<string, string> | string {
  const options = new Map<string, string>();
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq <= 0) return `option "${word}" is not key=value`;
    const key = word.slice(0, eq);
    if (options.has(key)) return `option "${key}" given twice`;
    options.set(key, word.slice(eq + 1));
  }
  return options;
}

/** An optional option: absent is fine; present, it must parse, and then it sets a field. */
function option<M, V>(key: string, parse: (text: string) => V | undefined, wrong: string, set: (msg: M, value: V) => void): OptionRule<M> {
  return (options, msg) => {
    const text = options.get(key);
    if (text === undefined) return undefined;
    const value = parse(text);
    if (value === undefined) return wrong;
    set(msg, value);
    return undefined;
  };
}

/** Applies the rules in order, so the first option at fault is the one reported. */
function applyOptions<M>(options: ReadonlyMap<string, string>, rules: readonly OptionRule<M>[], msg: M): string | undefined {
  for (const rule of rules) {
    const wrong = rule(options, msg);
    if (wrong !== undefined) return wrong;
  }
  return undefined;
}

const matching = (pattern: RegExp) => (text: string) => (pattern.test(text) ? text : undefined);
/**
 * A feat= list: comma-separated names. Names this side does not know are dropped
 * (a newer peer may list more); a malformed list is a bad line.
 */
function parseFeatures(text: string): Feature[] | undefined {
  const names = text === '' ? [] : text.split(',');
  if (names.length > MAX_FEATURES || !names.every((name) => FEATURE_NAME.test(name))) return undefined;
  return FEATURES.filter((feature) => names.includes(feature));
}

/** A fleet's node list (`OK … nodes=`, `NODES`): 1 to MAX_NODES `host:port`, comma-separated. */
function parseNodes(text: string): string[] | undefined {
  const nodes = text.split(',');
  return nodes.length <= MAX_NODES && nodes.every((node) => splitHostPort(node) !== undefined) ? nodes : undefined;
}

const WRONG_FEATURES = `feat= must be up to ${MAX_FEATURES} comma-separated lowercase names`;

const HELLO_OPTIONS: readonly OptionRule<Hello>[] = [
  option(
    'host',
    (text) => (isHost(text) ? text : undefined),
    'host= is not a host name or address',
    (msg: Hello, host) => {
      msg.host = host;
    },
  ),
  option(
    'port',
    (text) => parsePort(text),
    'port= must be 1-65535',
    (msg: Hello, port) => {
      msg.port = port;
    },
  ),
  option('resume', matching(TOKEN), 'resume= must be 32 hex digits', (msg: Hello, resume) => void (msg.resume = resume)),
  option(
    'warm',
    (text) => (/^[0-9]{1,4}$/.test(text) ? Number(text) : undefined),
    'warm= must be 0-9999',
    (msg: Hello, warm) => {
      msg.warm = warm;
    },
  ),
  option('feat', parseFeatures, WRONG_FEATURES, (msg: Hello, features) => {
    msg.features = features;
  }),
  option('tenant', matching(TENANT_NAME), `tenant= must be ${TENANT_NAME_RULE}`, (msg: Hello, tenant) => {
    msg.tenant = tenant;
  }),
  option('name', parseServiceName, `name= must be ${SERVICE_NAME_RULE}`, (msg: Hello, name) => void (msg.name = name)),
  ...ACL_HELLO_OPTIONS,
];

const OK_OPTIONS: readonly OptionRule<Ok>[] = [
  option('warm', matching(TOKEN), 'warm= must be 32 hex digits', (msg: Ok, warm) => {
    msg.warmToken = warm;
  }),
  option('feat', parseFeatures, WRONG_FEATURES, (msg: Ok, features) => {
    msg.features = features;
  }),
  option('nodes', parseNodes, `nodes= must be up to ${MAX_NODES} comma-separated HOST:PORT`, (msg: Ok, nodes) => {
    msg.nodes = nodes;
  }),
];

function parseHello(words: string[]): ParseResult {
  const versionText = words[1];
  if (versionText === undefined || !/^[1-9][0-9]{0,8}$/.test(versionText)) {
    return fail('bad-line', 'HELLO needs a protocol version: HELLO 1 [host=H] [port=P]');
  }
  const version = Number(versionText);
  // A peer of another version may use options we do not know; the relay answers
  // with a version error rather than a syntax error, so only the number matters.
  if (version !== PROTOCOL_VERSION) return { ok: true, msg: { kind: 'HELLO', version } };
  const options = parseOptions(words.slice(2));
  if (typeof options === 'string') return fail('bad-line', options);
  const msg: Hello = { kind: 'HELLO', version };
  const wrong = applyOptions(options, HELLO_OPTIONS, msg) ?? poolOption(options, msg);
  return wrong === undefined ? { ok: true, msg } : fail('bad-line', wrong);
}

function parseOk(words: string[]): ParseResult {
  const address = splitPublicAddress(words[1] ?? '');
  if (address === undefined) return fail('bad-line', 'OK needs HOST:PORT');
  const options = parseOptions(words.slice(2));
  if (typeof options === 'string') return fail('bad-line', options);
  const dataPort = parsePort(options.get('data'));
  const heartbeat = options.get('heartbeat');
  const resume = options.get('resume');
  if (dataPort === undefined) return fail('bad-line', 'OK needs data=PORT');
  if (heartbeat === undefined || !/^[1-9][0-9]{0,6}$/.test(heartbeat)) {
    return fail('bad-line', 'OK needs heartbeat=MILLISECONDS');
  }
  if (resume === undefined || !TOKEN.test(resume)) return fail('bad-line', 'OK needs resume=KEY');
  const msg: Ok = { kind: 'OK', host: address.host, port: address.port, dataPort, heartbeatMs: Number(heartbeat), resume };
  const wrong = applyOptions(options, OK_OPTIONS, msg);
  return wrong === undefined ? { ok: true, msg } : fail('bad-line', wrong);
}

function parseClientAddress(kind: 'CONNECT' | 'CLIENT', words: string[], at: number): ParseResult | { address: string; port: number } {
  const address = words[at];
  const port = parsePort(words[at + 1], true);
  if (address === undefined || !ADDRESS.test(address) || port === undefined) {
    return fail('bad-line', `${kind} needs an address and a port`);
  }
  return { address, port };
}

function parseConnect(words: string[]): ParseResult {
  const token = words[1];
  if (words.length !== 4 || token === undefined || !TOKEN.test(token)) {
    return fail('bad-line', 'CONNECT needs TOKEN ADDRESS PORT');
  }
  const client = parseClientAddress('CONNECT', words, 2);
  if ('ok' in client) return client;
  return { ok: true, msg: { kind: 'CONNECT', token, clientAddress: client.address, clientPort: client.port } };
}

function parseClient(words: string[]): ParseResult {
  if (words.length !== 5) return fail('bad-line', 'CLIENT needs CLIENT-ADDRESS CLIENT-PORT SERVER-ADDRESS SERVER-PORT');
  const client = parseClientAddress('CLIENT', words, 1);
  if ('ok' in client) return client;
  const server = parseClientAddress('CLIENT', words, 3);
  if ('ok' in server) return server;
  return {
    ok: true,
    msg: { kind: 'CLIENT', clientAddress: client.address, clientPort: client.port, serverAddress: server.address, serverPort: server.port },
  };
}

function parseNodesLine(words: string[]): ParseResult {
  const nodes = words.length === 2 ? parseNodes(words[1]!) : undefined;
  return nodes === undefined ? fail('bad-line', `NODES needs 1 to ${MAX_NODES} comma-separated HOST:PORT`) : { ok: true, msg: { kind: 'NODES', nodes } };
}

function parseErr(words: string[]): ParseResult {
  const code = words[1];
  if (!isErrorCode(code)) return fail('bad-line', 'ERR needs a known code');
  return { ok: true, msg: { kind: 'ERR', code, text: words.slice(2).join(' ') } };
}

const withMac =
  (kind: 'AUTH' | 'PROOF'): VerbParser =>
  (words) => {
    const value = words[1];
    if (words.length !== 2 || value === undefined || !MAC.test(value)) return fail('bad-line', `${kind} needs 64 hex digits`);
    return { ok: true, msg: kind === 'AUTH' ? { kind, nonce: value } : { kind, mac: value } };
  };

const withToken =
  (kind: 'DATA' | 'IDLE' | 'PROBE'): VerbParser =>
  (words) => {
    const token = words[1];
    if (words.length !== 2 || token === undefined || !TOKEN.test(token)) return fail('bad-line', `${kind} needs a token of 32 hex digits`);
    return { ok: true, msg: { kind, token } };
  };

const bare =
  (kind: 'PING' | 'PONG' | 'SHUTDOWN' | 'LEAVE' | 'REJOIN' | 'PROBED'): VerbParser =>
  (words) =>
    words.length !== 1 ? fail('bad-line', `${kind} takes no arguments`) : { ok: true, msg: { kind } };

const VERBS: ReadonlyMap<string, VerbParser> = new Map<Message['kind'], VerbParser>([
  ['HELLO', parseHello],
  ['OK', parseOk],
  ['AUTH', withMac('AUTH')],
  ['PROOF', withMac('PROOF')],
  ['DATA', withToken('DATA')],
  ['IDLE', withToken('IDLE')],
  ['PROBE', withToken('PROBE')],
  ...POOL_VERBS,
  ['NODES', parseNodesLine],
  ['CONNECT', parseConnect],
  ['CLIENT', parseClient],
  ['PING', bare('PING')],
  ['PONG', bare('PONG')],
  ['SHUTDOWN', bare('SHUTDOWN')],
  ['LEAVE', bare('LEAVE')],
  ['REJOIN', bare('REJOIN')],
  ['PROBED', bare('PROBED')],
  ['ERR', parseErr],
]);

/** Parses one line (without its LF) into a message, or says exactly what is wrong. */
export function parseLine(line: string): ParseResult {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  if (text.length === 0) return fail('bad-line', 'empty line');
  // LineReader already refuses such bytes; a caller that got its line elsewhere must not slip one in.
  if (/[^\x20-\x7e]/.test(text)) return fail('binary', 'a character outside printable ASCII');
  // ERR text is free text and may mention HTTP; anything else shaped like a request line is one.
  if (!text.startsWith('ERR ') && text.includes(' HTTP/') && HTTP_REQUEST.test(text)) {
    return { ok: false, code: 'bad-line', reason: 'an HTTP request on a relay port', spokeHttp: true };
  }
  const words = text.split(' ');
  const verb = words[0] ?? '';
  const parse = VERBS.get(verb);
  return parse === undefined ? fail('bad-line', `unknown message "${truncate(verb, 20)}"`) : parse(words);
}

/** Parses a line a service sent (what the relay reads); a relay's message is a bad line here. */
export function parseServiceLine(line: string): ParseResult<ServiceMessage> {
  return parseFrom(line, SERVICE_KINDS, 'a service') as ParseResult<ServiceMessage>;
}

/** Parses a line the relay sent (what a service reads); a service's message is a bad line here. */
export function parseRelayLine(line: string): ParseResult<RelayMessage> {
  return parseFrom(line, RELAY_KINDS, 'the relay') as ParseResult<RelayMessage>;
}

// The one cast is here, checked against the kinds of the direction's union above.
function parseFrom(line: string, kinds: ReadonlySet<string>, sender: string): ParseResult {
  const parsed = parseLine(line);
  if (parsed.ok && !kinds.has(parsed.msg.kind)) return fail('bad-line', `${parsed.msg.kind} is not a message ${sender} sends`);
  return parsed;
}

const truncate = (text: string, max: number): string => (text.length > max ? `${text.slice(0, max)}...` : text);
