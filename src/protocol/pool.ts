import type { ParseResult, ServiceMessage } from './messages.js';

/** The pool's part of the protocol (docs/protocol.md §17): HELLO pool=, DRAIN, HEALTH, DECLINE. */

type Hello = ServiceMessage & { kind: 'HELLO' };

const KEY = /^[0-9a-f]{32}$/;

/**
 * HELLO's `pool=`: a key of 32 hex digits, only from a service that speaks the pool's
 * messages (feat=pool), and never with resume=: the address is the pool's, no one
 * process's. Returns what is wrong, if anything.
 */
export function poolOption(options: ReadonlyMap<string, string>, msg: Hello): string | undefined {
  const key = options.get('pool');
  if (key === undefined) return undefined;
  if (!KEY.test(key)) return 'pool= must be 32 hex digits';
  if (msg.resume !== undefined) return 'pool= and resume= cannot be combined';
  if (msg.features?.includes('pool') !== true) return 'pool= needs feat=pool';
  msg.pool = key;
  return undefined;
}

const badLine = (reason: string): ParseResult => ({ ok: false, code: 'bad-line', reason });

/** The parsers of the three lines a pool member may send on its control connection, by verb. */
export const POOL_VERBS: readonly [ServiceMessage['kind'], (words: string[]) => ParseResult][] = [
  ['DRAIN', (words) => (words.length === 1 ? { ok: true, msg: { kind: 'DRAIN' } } : badLine('DRAIN takes no arguments'))],
  [
    'HEALTH',
    (words) => {
      const state = words[1];
      return words.length === 2 && (state === 'up' || state === 'down') ? { ok: true, msg: { kind: 'HEALTH', state } } : badLine('HEALTH needs up or down');
    },
  ],
  [
    'DECLINE',
    (words) => {
      const token = words[1];
      return words.length === 2 && token !== undefined && KEY.test(token) ? { ok: true, msg: { kind: 'DECLINE', token } } : badLine('DECLINE needs a token of 32 hex digits');
    },
  ],
];
