import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatMessage } from '../../src/protocol/format.js';
import { parseRelayLine, parseServiceLine } from '../../src/protocol/parse.js';

// The lines of feature pool (docs/protocol.md §17); their round trip is in messages.test.ts.

const KEY = '0123456789abcdef0123456789abcdef';
const OTHER = 'fedcba9876543210fedcba9876543210';

test('pool lines: HELLO pool= needs feat=pool, cannot go with resume=, and must be a key', () => {
  assert.deepEqual(parseServiceLine(`HELLO 1 pool=${KEY} feat=leave,pool`), { ok: true, msg: { kind: 'HELLO', version: 1, pool: KEY, features: ['leave', 'pool'] } });
  const refused: [string, string][] = [
    [`HELLO 1 pool=${KEY} resume=${OTHER} feat=pool`, 'pool= and resume= cannot be combined'],
    [`HELLO 1 pool=${KEY} feat=leave`, 'pool= needs feat=pool'],
    [`HELLO 1 pool=${KEY}`, 'pool= needs feat=pool'],
    [`HELLO 1 pool=${KEY.toUpperCase()} feat=pool`, 'pool= must be 32 hex digits'],
    ['HELLO 1 pool= feat=pool', 'pool= must be 32 hex digits'],
  ];
  for (const [line, reason] of refused) assert.deepEqual(parseServiceLine(line), { ok: false, code: 'bad-line', reason }, line);
});

test("pool lines: DRAIN, HEALTH up|down and DECLINE <token> are a service's lines, exactly as formatted", () => {
  assert.equal(formatMessage({ kind: 'DRAIN' }), 'DRAIN\n');
  assert.equal(formatMessage({ kind: 'HEALTH', state: 'down' }), 'HEALTH down\n');
  assert.equal(formatMessage({ kind: 'DECLINE', token: KEY }), `DECLINE ${KEY}\n`);
  assert.equal(formatMessage({ kind: 'HELLO', version: 1, pool: KEY, features: ['pool'] }), `HELLO 1 pool=${KEY} feat=pool\n`);
  for (const line of ['DRAIN now', 'HEALTH', 'HEALTH sideways', 'HEALTH up now', 'DECLINE', `DECLINE ${KEY} ${KEY}`, 'DECLINE 1234']) {
    const parsed = parseServiceLine(line);
    assert.equal(parsed.ok, false, line);
    assert.equal(parsed.ok ? undefined : parsed.code, 'bad-line');
  }
  for (const line of ['DRAIN', 'HEALTH up', `DECLINE ${KEY}`]) {
    assert.equal(parseServiceLine(line).ok, true, line);
    assert.equal(parseRelayLine(line).ok, false, `${line} is not a relay's`);
  }
});
