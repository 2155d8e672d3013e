import type { Message, ParseResult, ServiceMessage } from './messages.js';

/**
 * The lines of feature `pool` (docs/protocol.md §17): HELLO's `pool=` and the three
 * messages a pool member sends. Kept apart from parse.ts, which they extend, so that
 * file stays one screen of general rules.
 */

const KEY = /^[0-9a-f]{32}$/;

type Hello = ServiceMessage & { kind: 'HELLO' };

const bad = (reason: string): ParseResult => ({ ok: false, code: 'bad-line', reason });

/**
 * HELLO's `pool=`, checked after every other option: a pool key replaces a resume key
 * (the address belongs to the pool), and is honoured only from a service that listed
 * the feature, so the member is sure to be able to read what follows from the relay.
 */
export function poolOption(options: ReadonlyMap<string, string>, msg: Hello): string | undefined {
  const pool = options.get('pool');
  if (pool === undefined) return undefined;
  if (!KEY.test(pool)) return 'pool= must be 32 hex digits';
  if (msg.resume !== undefined) return 'pool= and resume= cannot be combined';
  if (msg.features?.includes('pool') !== true) return 'pool= needs feat=pool';
  msg.pool = pool;
  return undefined;
}

function parseHealth(words: string[]): ParseResult {
  const state = words[1];
  if (words.length !== 2 || (state !== 'up' && state !== 'down')) return bad('HEALTH needs up or down');
  return { ok: true, msg: { kind: 'HEALTH', state } };
}

function parseDecline(words: string[]): ParseResult {
  const token = words[1];
  if (words.length !== 2 || token === undefined || !KEY.test(token)) return bad('DECLINE needs a token of 32 hex digits');
  return { ok: true, msg: { kind: 'DECLINE', token } };
}

/** The verbs of feature `pool`, for parse.ts's table. */
export const POOL_VERBS: readonly [Message['kind'], (words: string[]) => ParseResult][] = [
  ['DRAIN', (words) => (words.length !== 1 ? bad('DRAIN takes no arguments') : { ok: true, msg: { kind: 'DRAIN' } })],
  ['HEALTH', parseHealth],
  ['DECLINE', parseDecline],
];
