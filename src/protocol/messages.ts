import type { Cidr } from './cidr.js';

/**
 * The wire protocol, version 1: every message either side can send, and the constants
 * both sides agree on. parse.ts turns a line into one of these, format.ts one of these
 * into a line; no sockets in any of them, so every rule can be unit-tested and fuzzed.
 * docs/protocol.md is the prose form of these files; change them together.
 */

export const PROTOCOL_VERSION = 1;

/** Longest line either side may send, counting the terminating LF. */
export const MAX_LINE_BYTES = 1024;

/** Most nodes a fleet's list (`OK … nodes=`, `NODES`) carries: a fleet is a handful of machines. */
export const MAX_NODES = 16;
/** The longest such list a relay writes, commas included, so either line stays within MAX_LINE_BYTES. */
export const MAX_NODE_LIST_CHARS = 600;

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
  'bad-name', // a name= this relay will never give this service as it stands (sent only to services with feat=name)
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
  'nodes', // relay -> service NODES: the fleet's nodes changed (sent only to services that listed fleet too)
  'name', // relay -> service OK … feat=name: this relay routes HELLO … name= on its names ports (an older one ignores name=)
  'pool', // service -> relay HELLO pool=, DRAIN, HEALTH, DECLINE: one of several members serving one address
  'acl', // relay honours HELLO allow=/deny=: who may connect to the service's port
] as const;
export type Feature = (typeof FEATURES)[number];

/** Messages a service sends. HELLO or DATA is the first line of every connection. */
export type ServiceMessage =
  /** Opens a control connection; everything after the version is optional. */
  | { kind: 'HELLO'; version: number; host?: string; port?: number; resume?: string; pool?: string; warm?: number; features?: Feature[]; tenant?: string; name?: string; allow?: Cidr[]; deny?: Cidr[] }
  /** Answers AUTH: HMAC-SHA256(secret, nonce) in hex. */
  | { kind: 'PROOF'; mac: string }
  /** Answers PING. */
  | { kind: 'PONG' }
  /** Optional liveness probe of its own; the relay answers PONG. */
  | { kind: 'PING' }
  /** Only with feature `leave`: the service stops for good; its port is freed at once. */
  | { kind: 'LEAVE' }
  /** Only with feature `pool`: this member takes no new clients; it closes its control connection once its tunnels are done. */
  | { kind: 'DRAIN' }
  /** Only with feature `pool`: this member's own target is down (no new clients) or back. */
  | { kind: 'HEALTH'; state: 'up' | 'down' }
  /** Only with feature `pool`: answers a CONNECT this member cannot serve; the relay offers the client to another member. */
  | { kind: 'DECLINE'; token: string }
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
  /** Only with features `fleet` and `nodes`: every node of the fleet now; register with those not registered with yet. */
  | { kind: 'NODES'; nodes: string[] }
  /** On a data connection that presented a probe token: the data path works; the relay closes. */
  | { kind: 'PROBED' }
  /** A refusal; the sender closes the connection after it. */
  | { kind: 'ERR'; code: ErrorCode; text: string };

export type Message = ServiceMessage | RelayMessage;

export type ParseResult<M extends Message = Message> = { ok: true; msg: M } | { ok: false; code: ErrorCode; reason: string; spokeHttp?: true };

/** What a tenant may be called: safe in a log field, a metric label and a HELLO option. */
export const TENANT_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** TENANT_NAME in words, for messages that tell a person what a tenant name may be. */
export const TENANT_NAME_RULE = '1-64 of A-Z a-z 0-9 _ . -';

/** A parser for one direction of the protocol. */
export type LineParser<M extends Message> = (line: string) => ParseResult<M>;
