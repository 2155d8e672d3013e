import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatMessage } from '../../src/protocol/format.js';
import { parseRelayLine, parseServiceLine } from '../../src/protocol/parse.js';
import { TOKEN, TOKEN2, withoutLf } from './message-examples.js';

test('pool: HELLO pool=KEY with feat=pool parses, and formats back to the same line', () => {
  const line = `HELLO 1 host=relay.example.com pool=${TOKEN} feat=leave,pool`;
  const parsed = parseServiceLine(line);
  assert.deepEqual(parsed, { ok: true, msg: { kind: 'HELLO', version: 1, host: 'relay.example.com', features: ['leave', 'pool'], pool: TOKEN } });
  assert.ok(parsed.ok);
  assert.equal(withoutLf(formatMessage(parsed.msg)), line);
});

test('pool: pool= with resume=, without feat=pool, or not 32 hex digits is a bad line saying why', () => {
  const cases: [string, string][] = [
    [`HELLO 1 resume=${TOKEN2} pool=${TOKEN} feat=pool`, 'pool= and resume= cannot be combined'],
    [`HELLO 1 pool=${TOKEN} resume=${TOKEN2} feat=pool`, 'pool= and resume= cannot be combined'],
    [`HELLO 1 pool=${TOKEN}`, 'pool= needs feat=pool'],
    [`HELLO 1 pool=${TOKEN} feat=leave,probe`, 'pool= needs feat=pool'],
    [`HELLO 1 pool=${TOKEN.toUpperCase()} feat=pool`, 'pool= must be 32 hex digits'],
    [`HELLO 1 pool=${TOKEN}0 feat=pool`, 'pool= must be 32 hex digits'],
  ];
  for (const [line, reason] of cases) assert.deepEqual(parseServiceLine(line), { ok: false, code: 'bad-line', reason }, line);
});

test('pool: a service that lists pool but sends no pool= is an ordinary HELLO', () => {
  assert.deepEqual(parseServiceLine('HELLO 1 feat=pool'), { ok: true, msg: { kind: 'HELLO', version: 1, features: ['pool'] } });
});

test('pool: DRAIN, HEALTH up|down and DECLINE TOKEN round-trip, and are lines a service sends, not the relay', () => {
  const messages = [{ kind: 'DRAIN' }, { kind: 'HEALTH', state: 'down' }, { kind: 'HEALTH', state: 'up' }, { kind: 'DECLINE', token: TOKEN }] as const;
  const lines = ['DRAIN', 'HEALTH down', 'HEALTH up', `DECLINE ${TOKEN}`];
  messages.forEach((msg, i) => {
    assert.equal(withoutLf(formatMessage(msg)), lines[i]);
    assert.deepEqual(parseServiceLine(lines[i]!), { ok: true, msg });
    assert.equal(parseRelayLine(lines[i]!).ok, false);
  });
});

test('pool: malformed DRAIN, HEALTH and DECLINE lines are bad lines naming the form', () => {
  const cases: [string, string][] = [
    ['DRAIN now', 'DRAIN takes no arguments'],
    ['HEALTH', 'HEALTH needs up or down'],
    ['HEALTH UP', 'HEALTH needs up or down'],
    ['HEALTH up now', 'HEALTH needs up or down'],
    ['DECLINE', 'DECLINE needs a token of 32 hex digits'],
    [`DECLINE ${TOKEN.slice(1)}`, 'DECLINE needs a token of 32 hex digits'],
    [`DECLINE ${TOKEN} ${TOKEN2}`, 'DECLINE needs a token of 32 hex digits'],
  ];
  for (const [line, reason] of cases) assert.deepEqual(parseServiceLine(line), { ok: false, code: 'bad-line', reason }, line);
});

test('pool: an OK that lists pool reads back with it; one that does not (an older relay) has no pool feature', () => {
  const withPool = parseRelayLine(`OK relay.example.com:9001 data=7000 heartbeat=5000 resume=${TOKEN} feat=leave,pool`);
  assert.ok(withPool.ok && withPool.msg.kind === 'OK');
  assert.deepEqual(withPool.msg.features, ['leave', 'pool']);
  const older = parseRelayLine(`OK relay.example.com:9001 data=7000 heartbeat=5000 resume=${TOKEN} feat=leave`);
  assert.ok(older.ok && older.msg.kind === 'OK');
  assert.equal(older.msg.features?.includes('pool'), false);
});
