import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatMessage } from '../../src/protocol/format.js';
import { MAX_LINE_BYTES } from '../../src/protocol/messages.js';
import { parseLine } from '../../src/protocol/parse.js';

const TOKEN = '0123456789abcdef0123456789abcdef';

test('probe: PROBE carries one token of 32 hex digits, and round-trips', () => {
  const line = formatMessage({ kind: 'PROBE', token: TOKEN });
  assert.equal(line, `PROBE ${TOKEN}\n`);
  assert.ok(Buffer.byteLength(line) <= MAX_LINE_BYTES);
  assert.deepEqual(parseLine(line.slice(0, -1)), { ok: true, msg: { kind: 'PROBE', token: TOKEN } });
  assert.deepEqual(parseLine(`PROBE ${TOKEN}\r`), { ok: true, msg: { kind: 'PROBE', token: TOKEN } });
});

test('probe: a PROBE without a well-formed token, or with more words, is a bad line', () => {
  for (const line of ['PROBE', `PROBE ${TOKEN.toUpperCase()}`, `PROBE ${TOKEN.slice(1)}`, `PROBE ${TOKEN} now`, `PROBE  ${TOKEN}`]) {
    const parsed = parseLine(line);
    assert.ok(!parsed.ok, `${JSON.stringify(line)} was accepted`);
    assert.equal(parsed.code, 'bad-line');
  }
});

test('probe: PROBED is a bare word, like PING', () => {
  assert.equal(formatMessage({ kind: 'PROBED' }), 'PROBED\n');
  assert.deepEqual(parseLine('PROBED'), { ok: true, msg: { kind: 'PROBED' } });
  for (const line of ['PROBED ok', `PROBED ${TOKEN}`, 'probed']) assert.equal(parseLine(line).ok, false, line);
});

test('probe: the feature is negotiated by name in HELLO and OK', () => {
  const hello = parseLine('HELLO 1 feat=rejoin,probe');
  assert.deepEqual(hello, { ok: true, msg: { kind: 'HELLO', version: 1, features: ['rejoin', 'probe'] } });
  assert.equal(formatMessage({ kind: 'HELLO', version: 1, features: ['probe'] }), 'HELLO 1 feat=probe\n');
  const ok = parseLine(`OK r.example:9000 data=7000 heartbeat=5000 resume=${TOKEN} feat=probe`);
  assert.ok(ok.ok && ok.msg.kind === 'OK');
  assert.deepEqual(ok.msg.features, ['probe']);
});
