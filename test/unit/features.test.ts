import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatMessage } from '../../src/protocol/format.js';
import { MAX_LINE_BYTES, MAX_NODE_LIST_CHARS, MAX_NODES } from '../../src/protocol/messages.js';
import { parseLine, parseRelayLine, parseServiceLine } from '../../src/protocol/parse.js';
import { withoutLf } from './message-examples.js';

const KEY = '0123456789abcdef0123456789abcdef';

test('feature negotiation: a HELLO lists features; names this side does not know are dropped, not refused', () => {
  const parsed = parseLine(`HELLO 1 resume=${KEY} feat=mirror,leave,rejoin,some-future-thing`);
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.msg, { kind: 'HELLO', version: 1, resume: KEY, features: ['rejoin', 'leave'] });
});

test('feature negotiation: an OK without feat= (an older relay) parses with no features at all', () => {
  const parsed = parseLine(`OK relay.example.com:8081 data=8080 heartbeat=5000 resume=${KEY}`);
  assert.ok(parsed.ok);
  assert.equal((parsed.msg as { features?: unknown }).features, undefined);
});

test('feature negotiation: a malformed feat= list is a bad line naming the rule', () => {
  for (const list of ['LEAVE', 'leave,,rejoin', 'a'.repeat(33), Array.from({ length: 33 }, (_, i) => `f${i}`).join(','), 'leave;rejoin']) {
    const parsed = parseLine(`HELLO 1 feat=${list}`);
    assert.ok(!parsed.ok, `feat=${list} was accepted`);
    assert.equal(parsed.code, 'bad-line');
    assert.match(parsed.reason, /feat=/);
  }
});

test('LEAVE and REJOIN take no arguments, and an older peer that never lists them never sees them', () => {
  assert.equal(formatMessage({ kind: 'LEAVE' }), 'LEAVE\n');
  assert.equal(formatMessage({ kind: 'REJOIN' }), 'REJOIN\n');
  for (const line of ['LEAVE now', 'REJOIN 1']) assert.equal(parseLine(line).ok, false);
  assert.equal(formatMessage({ kind: 'HELLO', version: 1 }), 'HELLO 1\n', 'no feat= unless features are given');
});

test('NODES: the relay sends the whole node list in one line, as OK nodes= does; a service reads it, the relay refuses it', () => {
  const nodes = ['relay1.example.com:7000', '[2001:db8::2]:7000'];
  assert.equal(formatMessage({ kind: 'NODES', nodes }), 'NODES relay1.example.com:7000,[2001:db8::2]:7000\n');
  assert.deepEqual(parseRelayLine('NODES relay1.example.com:7000,[2001:db8::2]:7000'), { ok: true, msg: { kind: 'NODES', nodes } });
  assert.deepEqual(parseServiceLine('NODES relay1.example.com:7000'), { ok: false, code: 'bad-line', reason: 'NODES is not a message a service sends' });
  // The longest list a relay writes (MAX_NODE_LIST_CHARS) leaves NODES far within a line.
  assert.ok('NODES '.length + MAX_NODE_LIST_CHARS + 1 <= MAX_LINE_BYTES);
  const sixteen = Array.from({ length: MAX_NODES }, (_, i) => `relay-${String(i).padStart(2, '0')}.example.com:7000`);
  assert.deepEqual(parseRelayLine(withoutLf(formatMessage({ kind: 'NODES', nodes: sixteen }))), { ok: true, msg: { kind: 'NODES', nodes: sixteen } });
});
