import { formatCidr, parseCidrList, type AccessList } from './cidr.js';
import type { ServiceMessage } from './messages.js';

/**
 * HELLO's `allow=` and `deny=` (feature `acl`, docs/protocol.md §19): who may connect
 * to the service's public port. Apart from parse.ts so the lists' rules are in one place.
 */

type Hello = ServiceMessage & { kind: 'HELLO' };

/**
 * The most characters `allow=` and `deny=` may take together on a HELLO line, so that
 * with every other option at its longest the line stays within MAX_LINE_BYTES.
 */
export const MAX_ACL_CHARS = 400;

/** One of HELLO's list options: absent is fine; present, every range must parse (the first bad one is quoted). */
function listOption(key: 'allow' | 'deny'): (options: ReadonlyMap<string, string>, msg: Hello) => string | undefined {
  return (options, msg) => {
    const text = options.get(key);
    if (text === undefined) return undefined;
    const list = parseCidrList(text);
    if (typeof list === 'string') return `${key}= must be comma-separated CIDR ranges: ${list.slice(0, 200)}`;
    msg[key] = list;
    return undefined;
  };
}

export const ACL_HELLO_OPTIONS = [listOption('allow'), listOption('deny')] as const;

/** The HELLO words for the lists, each written back canonically. */
export function aclWords(msg: Hello): string[] {
  const words: string[] = [];
  if (msg.allow !== undefined && msg.allow.length > 0) words.push(`allow=${msg.allow.map(formatCidr).join(',')}`);
  if (msg.deny !== undefined && msg.deny.length > 0) words.push(`deny=${msg.deny.map(formatCidr).join(',')}`);
  return words;
}

/** A HELLO's lists as one level of who may connect; undefined when it sent neither. */
export function helloAccess(msg: Hello): AccessList | undefined {
  if (msg.allow === undefined && msg.deny === undefined) return undefined;
  return { allow: msg.allow ?? [], deny: msg.deny ?? [] };
}
