import assert from 'node:assert/strict';
import { ERROR_CODES, PROTOCOL_VERSION, type Message } from '../../src/protocol/messages.js';
import { parseLine } from '../../src/protocol/parse.js';

// Shared by the message tests and the parser fuzz test.

export const TOKEN = '0123456789abcdef0123456789abcdef';
export const TOKEN2 = 'fedcba9876543210fedcba9876543210';
export const HEX64 = `${TOKEN}${TOKEN2}`;
export const PRINTABLE = /^[\x20-\x7e]*$/;

/** One example of every message kind, with and without its optional parts. */
export const EXAMPLES: Message[] = [
  { kind: 'HELLO', version: PROTOCOL_VERSION },
  { kind: 'HELLO', version: 1, host: 'example.com', port: 8080, resume: TOKEN, warm: 4 },
  { kind: 'HELLO', version: 1, host: '127.0.0.1' },
  { kind: 'HELLO', version: 1, host: '[::1]', port: 65535 },
  { kind: 'HELLO', version: 1, host: '2001:db8::1', port: 1 },
  { kind: 'HELLO', version: 1, warm: 0 },
  { kind: 'HELLO', version: 1, resume: TOKEN2 },
  { kind: 'HELLO', version: 2 },
  { kind: 'HELLO', version: 1, resume: TOKEN, features: ['rejoin', 'leave', 'superseded'] },
  { kind: 'HELLO', version: 1, features: [] },
  { kind: 'LEAVE' },
  { kind: 'REJOIN' },
  { kind: 'PROBE', token: TOKEN2 },
  { kind: 'PROBED' },
  { kind: 'NODES', nodes: ['relay1.example.com:7000'] },
  { kind: 'NODES', nodes: ['10.0.0.1:7000', '[2001:db8::2]:7000', 'relay3.example.com:7001'] },
  { kind: 'HELLO', version: 1, features: ['fleet', 'nodes'] },
  { kind: 'HELLO', version: 1, features: ['probe'] },
  { kind: 'HELLO', version: 1, host: 'relay.example.com', pool: TOKEN, features: ['leave', 'pool'] },
  { kind: 'HELLO', version: 1, host: '10.0.0.1', port: 40000, pool: TOKEN2, warm: 2, features: ['rejoin', 'pool'], tenant: 'acme' },
  { kind: 'DRAIN' },
  { kind: 'HEALTH', state: 'up' },
  { kind: 'HEALTH', state: 'down' },
  { kind: 'DECLINE', token: TOKEN2 },
  { kind: 'OK', host: 'relay.example.com', port: 40000, dataPort: 7001, heartbeatMs: 15000, resume: TOKEN, features: ['leave'] },
  { kind: 'OK', host: 'relay.example.com', port: 40001, dataPort: 7000, heartbeatMs: 5000, resume: TOKEN2, features: ['fleet'], nodes: ['relay1.example.com:7000', '[2001:db8::2]:7000'] },
  { kind: 'PROOF', mac: HEX64 },
  { kind: 'PONG' },
  { kind: 'DATA', token: TOKEN },
  { kind: 'IDLE', token: TOKEN2 },
  { kind: 'AUTH', nonce: HEX64 },
  { kind: 'OK', host: 'relay.example.com', port: 40000, dataPort: 7001, heartbeatMs: 15000, resume: TOKEN },
  { kind: 'OK', host: '203.0.113.7', port: 1, dataPort: 65535, heartbeatMs: 1, resume: TOKEN, warmToken: TOKEN2 },
  { kind: 'OK', host: '2001:db8::1', port: 443, dataPort: 7000, heartbeatMs: 9999999, resume: TOKEN2 },
  { kind: 'CONNECT', token: TOKEN, clientAddress: '198.51.100.23', clientPort: 54321 },
  { kind: 'CONNECT', token: TOKEN2, clientAddress: '::ffff:10.0.0.1', clientPort: 0 },
  { kind: 'CLIENT', clientAddress: '192.0.2.1', clientPort: 65535, serverAddress: '203.0.113.5', serverPort: 40000 },
  { kind: 'CLIENT', clientAddress: 'fe80::1', clientPort: 1, serverAddress: '::ffff:203.0.113.5', serverPort: 65535 },
  { kind: 'PING' },
  { kind: 'SHUTDOWN' },
  { kind: 'ERR', code: 'auth', text: 'wrong secret' },
  { kind: 'ERR', code: 'limit', text: '' },
  { kind: 'ERR', code: 'version', text: 'this relay speaks protocol 1; upgrade the relay or the service' },
  ...ERROR_CODES.map((code): Message => ({ kind: 'ERR', code, text: `text for ${code}` })),
  { kind: 'HELLO', version: 1, host: 'relay.example.com', features: ['leave', 'pool'], pool: TOKEN2 },
  { kind: 'DRAIN' },
  { kind: 'HEALTH', state: 'down' },
  { kind: 'HEALTH', state: 'up' },
  { kind: 'DECLINE', token: TOKEN },
];

/** The line without its LF, as LineReader hands it to parseLine. */
export function withoutLf(line: string): string {
  assert.ok(line.endsWith('\n'), `formatted line ends with LF: ${JSON.stringify(line)}`);
  return line.slice(0, -1);
}

export function parsed(line: string): Message {
  const result = parseLine(line);
  assert.ok(result.ok, `expected ${JSON.stringify(line)} to parse, got ${JSON.stringify(result)}`);
  return result.msg;
}
