import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatMessage } from '../../src/protocol/format.js';
import { ERROR_CODES, MAX_LINE_BYTES, PROTOCOL_VERSION } from '../../src/protocol/messages.js';
import { parseLine } from '../../src/protocol/parse.js';
import { EXAMPLES, HEX64, PRINTABLE, TOKEN, withoutLf } from './message-examples.js';
import { mulberry32, randomInt } from './prng.js';

// Seeded, so a failure names an input that fails again on the next run.

function randomPrintable(random: () => number, maxLength: number): string {
  const length = randomInt(random, 0, maxLength);
  let text = '';
  for (let i = 0; i < length; i++) text += String.fromCharCode(randomInt(random, 0x20, 0x7e));
  return text;
}

function randomBytes(random: () => number, maxLength: number): string {
  const length = randomInt(random, 0, maxLength);
  let text = '';
  for (let i = 0; i < length; i++) text += String.fromCharCode(randomInt(random, 0, 255));
  return text;
}

const WORDS = [
  'HELLO',
  'OK',
  'AUTH',
  'PROOF',
  'PING',
  'PONG',
  'DATA',
  'IDLE',
  'CONNECT',
  'CLIENT',
  'SHUTDOWN',
  'ERR',
  '1',
  '2',
  '0',
  '65535',
  '65536',
  TOKEN,
  HEX64,
  '::1',
  '[::1]:80',
  '10.0.0.1',
  'host=a',
  'port=80',
  `resume=${TOKEN}`,
  'warm=3',
  `warm=${TOKEN}`,
  `pool=${TOKEN}`,
  'feat=pool',
  'up',
  'down',
  'data=7',
  'heartbeat=9',
  'h:1',
  'DRAIN',
  'HEALTH',
  'DECLINE',
  'up',
  'down',
  `pool=${TOKEN}`,
  'feat=pool',
  ...ERROR_CODES,
  '',
  'HTTP/1.1',
  '/',
];

/** A valid line with a few random edits, to reach the parser's deeper branches. */
function mutatedLine(random: () => number, printableOnly: boolean): string {
  const base = withoutLf(formatMessage(EXAMPLES[randomInt(random, 0, EXAMPLES.length - 1)]!));
  const words = base.split(' ');
  const edits = randomInt(random, 1, 3);
  for (let e = 0; e < edits; e++) {
    const at = randomInt(random, 0, words.length - 1);
    const op = randomInt(random, 0, 5);
    if (op === 0) words.splice(at, 1);
    else if (op === 1) words.splice(at, 0, WORDS[randomInt(random, 0, WORDS.length - 1)]!);
    else if (op === 2) words[at] = WORDS[randomInt(random, 0, WORDS.length - 1)]!;
    else {
      const word = words[at] ?? '';
      const pos = randomInt(random, 0, word.length);
      const char = printableOnly ? String.fromCharCode(randomInt(random, 0x20, 0x7e)) : String.fromCharCode(randomInt(random, 0, 255));
      words[at] = op === 3 ? word.slice(0, pos) + char + word.slice(pos) : word.slice(0, pos) + char + word.slice(pos + 1);
    }
  }
  return words.join(' ');
}

/**
 * The parser's contract on any input: it returns, never throws; a refusal carries a
 * known code; whatever it accepts formats back to a valid line meaning the same thing.
 * `exact` is false for input a LineReader would never deliver (bytes outside printable
 * ASCII), where ERR text is allowed to come back sanitised.
 */
function checkParserContract(line: string, exact: boolean): 'ok' | 'refused' {
  let result;
  try {
    result = parseLine(line);
  } catch (err) {
    assert.fail(`parseLine threw on ${JSON.stringify(line)}: ${String(err)}`);
  }
  if (!result.ok) {
    assert.ok((ERROR_CODES as readonly string[]).includes(result.code), JSON.stringify(line));
    assert.equal(typeof result.reason, 'string');
    return 'refused';
  }
  const again = formatMessage(result.msg);
  assert.match(withoutLf(again), PRINTABLE, `re-formatted ${JSON.stringify(line)}`);
  assert.ok(Buffer.byteLength(again) <= MAX_LINE_BYTES, `re-formatted ${JSON.stringify(line)} is too long`);
  const reparsed = parseLine(withoutLf(again));
  assert.ok(reparsed.ok, `${JSON.stringify(line)} re-formatted as ${JSON.stringify(again)} does not parse`);
  if (exact || result.msg.kind !== 'ERR') {
    assert.deepEqual(reparsed.msg, result.msg, `${JSON.stringify(line)} re-formatted as ${JSON.stringify(again)}`);
  } else {
    assert.equal(reparsed.msg.kind, 'ERR');
    if (reparsed.msg.kind === 'ERR') assert.equal(reparsed.msg.code, result.msg.code);
  }
  return 'ok';
}

test('fuzz: parseLine never throws on 20000 random lines, and what it accepts round-trips', () => {
  const random = mulberry32(0x5eed1);
  const counts = { ok: 0, refused: 0 };
  for (let i = 0; i < 5000; i++) counts[checkParserContract(randomPrintable(random, i % 10 === 0 ? 1100 : 80), true)]++;
  for (let i = 0; i < 6000; i++) counts[checkParserContract(randomBytes(random, i % 10 === 0 ? 1100 : 80), false)]++;
  // More mutated lines than random ones: short lines (DRAIN, HEALTH up) survive few edits.
  for (let i = 0; i < 6000; i++) counts[checkParserContract(mutatedLine(random, true), true)]++;
  for (let i = 0; i < 3000; i++) counts[checkParserContract(mutatedLine(random, false), false)]++;
  assert.equal(counts.ok + counts.refused, 20000);
  // The mutations must reach the accepting branches too, or the round-trip half proves nothing.
  // About 1 in 20 (the pool examples, whose pool= needs feat=pool and no resume=, break more easily).
  assert.ok(counts.ok > 900, `only ${counts.ok} of 20000 fuzz lines parsed`);
});

test('a doubled or trailing space makes a line invalid instead of changing its meaning', () => {
  const random = mulberry32(42);
  let checked = 0;
  for (let i = 0; i < 2000; i++) {
    const msg = EXAMPLES[randomInt(random, 0, EXAMPLES.length - 1)]!;
    // ERR text is free text, and the tail of a HELLO of another version is ignored by design.
    if (msg.kind === 'ERR' || (msg.kind === 'HELLO' && msg.version !== PROTOCOL_VERSION)) continue;
    const line = withoutLf(formatMessage(msg));
    const spaces = [...line].flatMap((char, index) => (char === ' ' ? [index] : []));
    const at = spaces.length > 0 && random() < 0.7 ? spaces[randomInt(random, 0, spaces.length - 1)]! : line.length;
    const damaged = `${line.slice(0, at)} ${line.slice(at)}`;
    const result = parseLine(damaged);
    assert.equal(result.ok, false, `${JSON.stringify(damaged)} was accepted as ${JSON.stringify(result)}`);
    checked++;
  }
  assert.ok(checked > 1000);
});
