/**
 * The wire protocol, version 1: every message either side can send, how to parse a
 * line into one, and how to format one as a line. No sockets here, so every rule can
 * be unit-tested and fuzzed. docs/protocol.md is the prose form of this file; change
 * both together.
 */

export const PROTOCOL_VERSION = 1;

/** Longest line either side may send, counting the terminating LF. */
export const MAX_LINE_BYTES = 1024;

/** Error codes carried by `ERR <code> <text>`; stable, so peers can act on them. */
export const ERROR_CODES = [
  'bad-line', // not a line this protocol knows, or not valid where it was sent
  'too-long', // a line over MAX_LINE_BYTES
  'binary', // a byte outside printable ASCII in a protocol line
  'version', // HELLO with a protocol version this relay does not speak
  'auth', // wrong or missing secret
  'timeout', // the first line, or the PROOF, did not arrive in time (heartbeat silence closes without ERR)
  'bad-token', // DATA with a token that is unknown, used or expired
  'limit', // a relay limit (services, clients, pending dial-backs) is reached
  'shutdown', // the relay is shutting down
  'superseded', // another control connection registered with this resume key (sent only to services with feat=superseded)
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(code: string | undefined): code is ErrorCode {
  return (ERROR_CODES as readonly (string | undefined)[]).includes(code);
}

/**
 * Optional messages a peer may understand. A service lists the ones it understands in
 * `HELLO … feat=`, the relay answers in `OK … feat=` with those it understands too,
 * and neither side sends an optional message the other did not list: a service
 * written against an older protocol.md never sees a line it does not know.
 */
export const FEATURES = [
  'rejoin', // relay -> service REJOIN: register again now (the relay is being upgraded)
  'leave', // service -> relay LEAVE: this service is gone for good; free its port now
  'superseded', // relay -> service ERR superseded: another process took over this resume key
  'probe', // relay -> service PROBE: dial back with this token to prove the data path works
  'fleet', // relay -> service OK … nodes=: every node of the relay fleet; register with each
] as const;
export type Feature = (typeof FEATURES)[number];

/** Most names a feat= list may carry; more is a malformed line, not a longer loop. */
const MAX_FEATURES = 32;
const FEATURE_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/** Messages a service sends. HELLO or DATA is the first line of every connection. */
export type ServiceMessage =
  /** Opens a control connection; everything after the version is optional. */
  | { kind: 'HELLO'; version: number; host?: string; port?: number; resume?: string; warm?: number; features?: Feature[]; tenant?: string }
  /** Answers AUTH: HMAC-SHA256(secret, nonce) in hex. */
  | { kind: 'PROOF'; mac: string }
  /** Answers PING. */
  | { kind: 'PONG' }
  /** Optional liveness probe of its own; the relay answers PONG. */
  | { kind: 'PING' }
  /** Only with feature `leave`: the service stops for good; its port is freed at once. */
  | { kind: 'LEAVE' }
  /** Opens a data connection for the client that CONNECT announced. */
  | { kind: 'DATA'; token: string }
  /** Opens a prewarmed data connection that waits for a future client. */
  | { kind: 'IDLE'; token: string };

/** Messages the relay sends. */
export type RelayMessage =
  /** Asks the service to prove it knows the secret. */
  | { kind: 'AUTH'; nonce: string }
  /** Registration done: the public address, and how to behave from now on. */
  | { kind: 'OK'; host: string; port: number; dataPort: number; heartbeatMs: number; resume: string; warmToken?: string; features?: Feature[]; nodes?: string[] }
  /** A public client arrived: dial back with this token. */
  | { kind: 'CONNECT'; token: string; clientAddress: string; clientPort: number }
  /**
   * On a data connection: from the next byte on, this connection is the client, who
   * came from clientAddress:clientPort to the relay's serverAddress:serverPort.
   */
  | { kind: 'CLIENT'; clientAddress: string; clientPort: number; serverAddress: string; serverPort: number }
  /** Liveness probe; the service answers PONG. */
  | { kind: 'PING' }
  /** Answers a service's PING. */
  | { kind: 'PONG' }
  /** The relay is going away; reconnect later. */
  | { kind: 'SHUTDOWN' }
  /** Only with feature `rejoin`: register again at once, with the same resume key. */
  | { kind: 'REJOIN' }
  /** Only with feature `probe`: dial back with `DATA <token>`; no client comes of it. */
  | { kind: 'PROBE'; token: string }
  /** On a data connection that presented a probe token: the data path works; the relay closes. */
  | { kind: 'PROBED' }
  /** A refusal; the sender closes the connection after it. */
  | { kind: 'ERR'; code: ErrorCode; text: string };

export type Message = ServiceMessage | RelayMessage;

export type ParseResult<M extends Message = Message> =
  | { ok: true; msg: M }
  | { ok: false; code: ErrorCode; reason: string; spokeHttp?: true };

/** What a tenant may be called: safe in a log field, a metric label and a HELLO option. */
export const TENANT_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** A parser for one direction of the protocol. */
export type LineParser<M extends Message> = (line: string) => ParseResult<M>;

const SERVICE_KINDS: ReadonlySet<Message['kind']> = new Set<ServiceMessage['kind']>(['HELLO', 'PROOF', 'PONG', 'PING', 'LEAVE', 'DATA', 'IDLE']);
const RELAY_KINDS: ReadonlySet<Message['kind']> = new Set<RelayMessage['kind']>(['AUTH', 'OK', 'CONNECT', 'CLIENT', 'PING', 'PONG', 'SHUTDOWN', 'REJOIN', 'PROBE', 'PROBED', 'ERR']);

const TOKEN = /^[0-9a-f]{32}$/;
const MAC = /^[0-9a-f]{64}$/;
const PORT = /^[1-9][0-9]{0,4}$/;
// Host names, IPv4 and IPv6 literals (brackets optional); the relay never resolves it.
const HOST = /^(\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Fa-f:.]{2,45}|[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}))$/;
const ADDRESS = /^[0-9A-Fa-f:.]{2,45}$/;
const HTTP_REQUEST = /^[A-Z]{3,10} \S+ HTTP\/\d/;

const fail = (code: ErrorCode, reason: string): ParseResult => ({ ok: false, code, reason });

function parsePort(text: string | undefined, allowZero = false): number | undefined {
  if (text === undefined) return undefined;
  if (allowZero && text === '0') return 0;
  if (!PORT.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

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

/**
 * A feat= list: comma-separated names. Names this side does not know are dropped
 * (a newer peer may list more); a malformed list is a bad line.
 */
function parseFeatures(text: string | undefined): Feature[] | string | undefined {
  if (text === undefined) return undefined;
  const names = text === '' ? [] : text.split(',');
  if (names.length > MAX_FEATURES || !names.every((name) => FEATURE_NAME.test(name))) {
    return `feat= must be up to ${MAX_FEATURES} comma-separated lowercase names`;
  }
  return FEATURES.filter((feature) => names.includes(feature));
}

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
  const msg: ServiceMessage & { kind: 'HELLO' } = { kind: 'HELLO', version };
  const host = options.get('host');
  if (host !== undefined) {
    if (!HOST.test(host)) return fail('bad-line', 'host= is not a host name or address');
    msg.host = host;
  }
  const portText = options.get('port');
  if (portText !== undefined) {
    const port = parsePort(portText);
    if (port === undefined) return fail('bad-line', 'port= must be 1-65535');
    msg.port = port;
  }
  const resume = options.get('resume');
  if (resume !== undefined) {
    if (!TOKEN.test(resume)) return fail('bad-line', 'resume= must be 32 hex digits');
    msg.resume = resume;
  }
  const warm = options.get('warm');
  if (warm !== undefined) {
    if (!/^[0-9]{1,4}$/.test(warm)) return fail('bad-line', 'warm= must be 0-9999');
    msg.warm = Number(warm);
  }
  const features = parseFeatures(options.get('feat'));
  if (typeof features === 'string') return fail('bad-line', features);
  if (features !== undefined) msg.features = features;
  const tenant = options.get('tenant');
  if (tenant !== undefined) {
    if (!TENANT_NAME.test(tenant)) return fail('bad-line', 'tenant= must be 1-64 of A-Z a-z 0-9 _ . -');
    msg.tenant = tenant;
  }
  return { ok: true, msg };
}

function parseOk(words: string[]): ParseResult {
  const address = splitHostPort(words[1] ?? '');
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
  const msg: RelayMessage & { kind: 'OK' } = {
    kind: 'OK',
    host: address.host,
    port: address.port,
    dataPort,
    heartbeatMs: Number(heartbeat),
    resume,
  };
  const warm = options.get('warm');
  if (warm !== undefined) {
    if (!TOKEN.test(warm)) return fail('bad-line', 'warm= must be 32 hex digits');
    msg.warmToken = warm;
  }
  const features = parseFeatures(options.get('feat'));
  if (typeof features === 'string') return fail('bad-line', features);
  if (features !== undefined) msg.features = features;
  const nodes = parseNodes(options.get('nodes'));
  if (typeof nodes === 'string') return fail('bad-line', nodes);
  if (nodes !== undefined) msg.nodes = nodes;
  return { ok: true, msg };
}

/** Most nodes a nodes= list may carry; a fleet is a handful of machines. */
const MAX_NODES = 16;

function parseNodes(text: string | undefined): string[] | undefined | string {
  if (text === undefined) return undefined;
  const nodes = text.split(',');
  if (nodes.length > MAX_NODES || !nodes.every((node) => splitHostPort(node) !== undefined)) return `nodes= must be up to ${MAX_NODES} comma-separated HOST:PORT`;
  return nodes;
}

function parseClientAddress(kind: 'CONNECT' | 'CLIENT', words: string[], at: number): ParseResult | { address: string; port: number } {
  const address = words[at];
  const port = parsePort(words[at + 1], true);
  if (address === undefined || !ADDRESS.test(address) || port === undefined) {
    return fail('bad-line', `${kind} needs an address and a port`);
  }
  return { address, port };
}

/** Parses one line (without its LF) into a message, or says exactly what is wrong. */
export function parseLine(line: string): ParseResult {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  if (text.length === 0) return fail('bad-line', 'empty line');
  // LineReader already refuses such bytes; a caller that got its line elsewhere must not slip one in.
  if (/[^\x20-\x7e]/.test(text)) return fail('binary', 'a character outside printable ASCII');
  // ERR text is free text and may mention HTTP; anything else shaped like a request line is one.
  if (!text.startsWith('ERR ') && HTTP_REQUEST.test(text)) {
    return { ok: false, code: 'bad-line', reason: 'an HTTP request on a relay port', spokeHttp: true };
  }
  const words = text.split(' ');
  const verb = words[0];
  const argCount = words.length - 1;
  switch (verb) {
    case 'HELLO':
      return parseHello(words);
    case 'OK':
      return parseOk(words);
    case 'AUTH':
    case 'PROOF': {
      const value = words[1];
      if (argCount !== 1 || value === undefined || !MAC.test(value)) {
        return fail('bad-line', `${verb} needs 64 hex digits`);
      }
      return { ok: true, msg: verb === 'AUTH' ? { kind: 'AUTH', nonce: value } : { kind: 'PROOF', mac: value } };
    }
    case 'DATA':
    case 'IDLE':
    case 'PROBE': {
      const token = words[1];
      if (argCount !== 1 || token === undefined || !TOKEN.test(token)) {
        return fail('bad-line', `${verb} needs a token of 32 hex digits`);
      }
      return { ok: true, msg: { kind: verb, token } };
    }
    case 'CONNECT': {
      const token = words[1];
      if (argCount !== 3 || token === undefined || !TOKEN.test(token)) {
        return fail('bad-line', 'CONNECT needs TOKEN ADDRESS PORT');
      }
      const client = parseClientAddress('CONNECT', words, 2);
      if ('ok' in client) return client;
      return { ok: true, msg: { kind: 'CONNECT', token, clientAddress: client.address, clientPort: client.port } };
    }
    case 'CLIENT': {
      if (argCount !== 4) return fail('bad-line', 'CLIENT needs CLIENT-ADDRESS CLIENT-PORT SERVER-ADDRESS SERVER-PORT');
      const client = parseClientAddress('CLIENT', words, 1);
      if ('ok' in client) return client;
      const server = parseClientAddress('CLIENT', words, 3);
      if ('ok' in server) return server;
      return {
        ok: true,
        msg: { kind: 'CLIENT', clientAddress: client.address, clientPort: client.port, serverAddress: server.address, serverPort: server.port },
      };
    }
    case 'PING':
    case 'PONG':
    case 'SHUTDOWN':
    case 'LEAVE':
    case 'REJOIN':
    case 'PROBED':
      if (argCount !== 0) return fail('bad-line', `${verb} takes no arguments`);
      return { ok: true, msg: { kind: verb } };
    case 'ERR': {
      const code = words[1];
      if (!isErrorCode(code)) return fail('bad-line', 'ERR needs a known code');
      return { ok: true, msg: { kind: 'ERR', code, text: words.slice(2).join(' ') } };
    }
    default:
      return fail('bad-line', `unknown message "${truncate(verb ?? '', 20)}"`);
  }
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
function parseFrom(line: string, kinds: ReadonlySet<Message['kind']>, sender: string): ParseResult {
  const parsed = parseLine(line);
  if (parsed.ok && !kinds.has(parsed.msg.kind)) return fail('bad-line', `${parsed.msg.kind} is not a message ${sender} sends`);
  return parsed;
}

/** Formats a message as one line, LF included. */
export function formatMessage(msg: Message): string {
  switch (msg.kind) {
    case 'HELLO': {
      const words = ['HELLO', String(msg.version)];
      if (msg.host !== undefined) words.push(`host=${msg.host}`);
      if (msg.port !== undefined) words.push(`port=${msg.port}`);
      if (msg.resume !== undefined) words.push(`resume=${msg.resume}`);
      if (msg.warm !== undefined) words.push(`warm=${msg.warm}`);
      if (msg.features !== undefined) words.push(`feat=${msg.features.join(',')}`);
      if (msg.tenant !== undefined) words.push(`tenant=${msg.tenant}`);
      return words.join(' ') + '\n';
    }
    case 'OK': {
      const warm = msg.warmToken === undefined ? '' : ` warm=${msg.warmToken}`;
      const features = msg.features === undefined ? '' : ` feat=${msg.features.join(',')}`;
      const nodes = msg.nodes === undefined ? '' : ` nodes=${msg.nodes.join(',')}`;
      return `OK ${joinHostPort(msg.host, msg.port)} data=${msg.dataPort} heartbeat=${msg.heartbeatMs} resume=${msg.resume}${warm}${features}${nodes}\n`;
    }
    case 'AUTH':
      return `AUTH ${msg.nonce}\n`;
    case 'PROOF':
      return `PROOF ${msg.mac}\n`;
    case 'DATA':
    case 'IDLE':
    case 'PROBE':
      return `${msg.kind} ${msg.token}\n`;
    case 'CONNECT':
      return `CONNECT ${msg.token} ${msg.clientAddress} ${msg.clientPort}\n`;
    case 'CLIENT':
      return `CLIENT ${msg.clientAddress} ${msg.clientPort} ${msg.serverAddress} ${msg.serverPort}\n`;
    case 'PING':
    case 'PONG':
    case 'SHUTDOWN':
    case 'LEAVE':
    case 'REJOIN':
    case 'PROBED':
      return `${msg.kind}\n`;
    case 'ERR': {
      // The text is for people; keep the line valid, and within the cap, whatever it was given.
      const prefix = `ERR ${msg.code} `;
      const text = msg.text.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_LINE_BYTES - 1 - prefix.length);
      return `${prefix}${text}\n`;
    }
  }
}

/** `host:port`, with brackets around an IPv6 literal. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Inverse of joinHostPort; brackets are removed from IPv6 literals. */
export function splitHostPort(text: string): { host: string; port: number } | undefined {
  const colon = text.lastIndexOf(':');
  if (colon <= 0) return undefined;
  let host = text.slice(0, colon);
  const port = parsePort(text.slice(colon + 1));
  if (port === undefined || !HOST.test(host)) return undefined;
  if (host.startsWith('[')) host = host.slice(1, -1);
  else if (host.includes(':')) return undefined; // an IPv6 literal needs brackets here
  return { host, port };
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}
