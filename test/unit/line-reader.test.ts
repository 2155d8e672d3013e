import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineReader, type LineResult } from '../../src/protocol/line-reader.js';
import { MAX_LINE_BYTES } from '../../src/protocol/messages.js';
import { mulberry32, randomInt } from './prng.js';

const TOKEN = '0123456789abcdef0123456789abcdef';

/** Pushes each chunk and, after each, takes every line ready, as readLines does. */
function feed(reader: LineReader, chunks: Buffer[]): LineResult[] {
  const results: LineResult[] = [];
  for (const chunk of chunks) {
    reader.push(chunk);
    for (let next = reader.next(); next !== undefined; next = reader.next()) {
      results.push(next);
      if (!next.ok) return results;
    }
  }
  return results;
}

/** What a result amounts to, so a failed assertion shows what happened instead. */
function outcome(result: LineResult | undefined): string {
  if (result === undefined) return 'waiting';
  return result.ok ? `line ${JSON.stringify(result.line)}` : result.code;
}

function lines(...texts: string[]): LineResult[] {
  return texts.map((line) => ({ ok: true, line }));
}

function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    chunks.push(bytes.subarray(from, cut));
    from = cut;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

function oneByteAtATime(bytes: Buffer): Buffer[] {
  return [...bytes].map((byte) => Buffer.from([byte]));
}

test('lines read the same fed one byte at a time, all at once, or split at random points', () => {
  const longest = 'L'.repeat(MAX_LINE_BYTES - 1); // with its LF, exactly the limit
  const almost = 'C'.repeat(MAX_LINE_BYTES - 2); // with CR LF, exactly the limit
  const text = `HELLO 1 host=svc port=80\nPING\r\n\r\n\n${longest}\n${almost}\r\nDATA ${TOKEN}\n`;
  const tail = Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x0a, 0x0d]);
  const bytes = Buffer.concat([Buffer.from(text, 'latin1'), tail]);
  const expected = lines('HELLO 1 host=svc port=80', 'PING', '', '', longest, almost, `DATA ${TOKEN}`);
  const lineBytes = bytes.length - tail.length;

  const ways: Array<[string, Buffer[]]> = [
    ['all at once', [Buffer.from(text, 'latin1')]],
    ['one byte at a time', oneByteAtATime(Buffer.from(text, 'latin1'))],
  ];
  const random = mulberry32(7);
  for (let i = 0; i < 300; i++) {
    const cuts = Array.from({ length: randomInt(random, 1, 40) }, () => randomInt(random, 0, lineBytes));
    ways.push([`random split ${i}: ${cuts.join(',')}`, splitAt(Buffer.from(text, 'latin1'), cuts)]);
  }
  for (const [how, chunks] of ways) {
    assert.deepEqual(feed(new LineReader(), chunks), expected, how);
  }

  // And with the binary tail arriving in the same chunks: reading stops at the last
  // line taken, so the tail is handed back untouched.
  for (let i = 0; i < 100; i++) {
    const cuts = Array.from({ length: randomInt(random, 1, 20) }, () => randomInt(random, 0, bytes.length));
    const reader = new LineReader();
    const got: LineResult[] = [];
    for (const chunk of splitAt(bytes, cuts)) {
      reader.push(chunk);
      while (got.length < expected.length) {
        const next = reader.next();
        if (next === undefined) break;
        got.push(next);
      }
    }
    assert.deepEqual(got, expected, `split ${cuts.join(',')}`);
    assert.deepEqual(reader.takeRest(), tail, `split ${cuts.join(',')}`);
  }
});

test('several lines in one chunk come out one per next(), then undefined', () => {
  const reader = new LineReader();
  reader.push(Buffer.from('PING\nPONG\r\nSHUTDOWN\nPART'));
  assert.deepEqual(reader.next(), { ok: true, line: 'PING' });
  assert.deepEqual(reader.next(), { ok: true, line: 'PONG' });
  assert.deepEqual(reader.next(), { ok: true, line: 'SHUTDOWN' });
  assert.equal(reader.next(), undefined);
  assert.equal(reader.next(), undefined);
  reader.push(Buffer.from('IAL\n'));
  assert.deepEqual(reader.next(), { ok: true, line: 'PARTIAL' });
  assert.equal(reader.next(), undefined);
});

test('takeRest hands back exactly the bytes after the last line taken, binary included', () => {
  const payload = Buffer.from([0x00, 0xff, 0x16, 0x03, 0x01, 0x0a, 0x0d, 0x0a, 0x80, 0x7f]);

  const sameChunk = new LineReader();
  sameChunk.push(Buffer.concat([Buffer.from(`DATA ${TOKEN}\r\n`), payload]));
  assert.deepEqual(sameChunk.next(), { ok: true, line: `DATA ${TOKEN}` });
  assert.deepEqual(sameChunk.takeRest(), payload);
  assert.equal(sameChunk.takeRest().length, 0, 'taken once');

  const laterChunks = new LineReader();
  laterChunks.push(Buffer.from(`DATA ${TOKEN}`));
  assert.equal(laterChunks.next(), undefined);
  laterChunks.push(Buffer.concat([Buffer.from('\n'), payload.subarray(0, 3)]));
  assert.deepEqual(laterChunks.next(), { ok: true, line: `DATA ${TOKEN}` });
  laterChunks.push(payload.subarray(3));
  assert.deepEqual(laterChunks.takeRest(), payload);

  // Lines not yet taken are part of the rest: they belong to whoever reads on.
  const untaken = new LineReader();
  untaken.push(Buffer.from('PING\nPONG\nrest'));
  assert.deepEqual(untaken.next(), { ok: true, line: 'PING' });
  assert.deepEqual(untaken.takeRest(), Buffer.from('PONG\nrest'));

  const nothingAfter = new LineReader();
  nothingAfter.push(Buffer.from('PING\n'));
  assert.deepEqual(nothingAfter.next(), { ok: true, line: 'PING' });
  assert.equal(nothingAfter.takeRest().length, 0);
});

test('a TLS ClientHello is refused as binary on its first byte, before any LF', () => {
  const clientHello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
  const reader = new LineReader();
  reader.push(clientHello);
  const result = reader.next();
  assert.equal(outcome(result), 'binary');
  assert.match(result?.ok === false ? result.reason : '', /0x16/);

  const firstByteOnly = new LineReader();
  firstByteOnly.push(clientHello.subarray(0, 1));
  assert.equal(outcome(firstByteOnly.next()), 'binary');
});

test('every byte outside printable ASCII is refused as binary, however the line is split', () => {
  for (let byte = 0; byte < 256; byte++) {
    const printable = byte >= 0x20 && byte <= 0x7e;
    const input = Buffer.from([0x41, 0x42, byte, 0x43, 0x0a]);
    for (const chunks of [[input], oneByteAtATime(input)]) {
      const results = feed(new LineReader(), chunks);
      if (printable) {
        assert.deepEqual(results, lines(`AB${String.fromCharCode(byte)}C`), `byte 0x${byte.toString(16)}`);
      } else if (byte === 0x0a) {
        assert.deepEqual(results, lines('AB', 'C'), 'LF ends the line');
      } else {
        assert.equal(results.length, 1, `byte 0x${byte.toString(16)}`);
        assert.equal(outcome(results[0]), 'binary', `byte 0x${byte.toString(16)}`);
      }
    }
  }
});

test('a line of exactly MAX_LINE_BYTES with its LF is accepted; one byte more is refused too-long', () => {
  const fits = new LineReader();
  fits.push(Buffer.from(`${'a'.repeat(MAX_LINE_BYTES - 1)}\n`));
  assert.deepEqual(fits.next(), { ok: true, line: 'a'.repeat(MAX_LINE_BYTES - 1) });

  const over = new LineReader();
  over.push(Buffer.from(`${'a'.repeat(MAX_LINE_BYTES)}\n`));
  assert.equal(outcome(over.next()), 'too-long');

  // The CR of a CRLF counts as a byte of the line.
  const crlfFits = new LineReader();
  crlfFits.push(Buffer.from(`${'a'.repeat(MAX_LINE_BYTES - 2)}\r\n`));
  assert.deepEqual(crlfFits.next(), { ok: true, line: 'a'.repeat(MAX_LINE_BYTES - 2) });
  const crlfOver = new LineReader();
  crlfOver.push(Buffer.from(`${'a'.repeat(MAX_LINE_BYTES - 1)}\r\n`));
  const crlfResult = crlfOver.next();
  assert.equal(outcome(crlfResult), 'too-long');
});

test('an over-long line is refused as soon as it can no longer fit, not when its LF comes', () => {
  const reader = new LineReader();
  reader.push(Buffer.from('a'.repeat(MAX_LINE_BYTES - 1)));
  assert.equal(reader.next(), undefined, 'a LF could still make this a valid line');
  reader.push(Buffer.from('a'));
  const result = reader.next();
  assert.equal(outcome(result), 'too-long');

  const dripped = feed(new LineReader(), oneByteAtATime(Buffer.from('b'.repeat(MAX_LINE_BYTES + 10))));
  assert.equal(dripped.length, 1);
  assert.equal(outcome(dripped[0]), 'too-long');
});

test('the limit is per line: many full-size lines in one chunk are all accepted', () => {
  const line = 'z'.repeat(MAX_LINE_BYTES - 1);
  const reader = new LineReader();
  reader.push(Buffer.from(`${line}\n`.repeat(8)));
  const got: LineResult[] = [];
  for (let next = reader.next(); next !== undefined; next = reader.next()) got.push(next);
  assert.deepEqual(got, lines(...Array<string>(8).fill(line)));
});

test('a megabyte without a LF is refused on the first push, holding at most that chunk', () => {
  const chunk = Buffer.alloc(64 * 1024, 'a');
  const reader = new LineReader();
  reader.push(chunk);
  const result = reader.next();
  assert.equal(outcome(result), 'too-long', 'refused after the first 64 KiB chunk');
  assert.equal(reader.takeRest().length, 0, 'the refused bytes are dropped');

  const single = new LineReader();
  single.push(Buffer.alloc(1024 * 1024, 'a'));
  const singleResult = single.next();
  assert.equal(outcome(singleResult), 'too-long');
  assert.equal(single.takeRest().length, 0);
});

test('a refused reader does not keep buffering what the peer sends next', () => {
  const reader = new LineReader();
  reader.push(Buffer.from([0x16]));
  assert.equal(reader.next()?.ok, false);
  for (let i = 0; i < 16; i++) {
    reader.push(Buffer.alloc(64 * 1024, 'a'));
    reader.next();
  }
  assert.ok(reader.takeRest().length <= 64 * 1024, 'holds at most one chunk');
});

test('a lone CR inside a line is refused as binary; CR before LF is stripped', () => {
  const lone = new LineReader();
  lone.push(Buffer.from('PI\rNG\n'));
  const result = lone.next();
  assert.equal(outcome(result), 'binary');
  assert.match(result?.ok === false ? result.reason : '', /0x0d/);

  const doubled = new LineReader();
  doubled.push(Buffer.from('PING\r\r\n'));
  assert.equal(outcome(doubled.next()), 'binary', 'only one CR, right before the LF, is allowed');

  const stripped = new LineReader();
  stripped.push(Buffer.from('PING\r\n'));
  assert.deepEqual(stripped.next(), { ok: true, line: 'PING' });

  const onlyCrlf = new LineReader();
  onlyCrlf.push(Buffer.from('\r\n'));
  assert.deepEqual(onlyCrlf.next(), { ok: true, line: '' });
});

test('a CR split from its LF across two pushes still ends the line', () => {
  const reader = new LineReader();
  reader.push(Buffer.from('PING\r'));
  assert.equal(reader.next(), undefined, 'the CR alone decides nothing yet');
  reader.push(Buffer.from('\nPONG\r'));
  assert.deepEqual(reader.next(), { ok: true, line: 'PING' });
  assert.equal(reader.next(), undefined);
  reader.push(Buffer.from('\n'));
  assert.deepEqual(reader.next(), { ok: true, line: 'PONG' });
  assert.equal(reader.takeRest().length, 0);

  const notLf = new LineReader();
  notLf.push(Buffer.from('PING\r'));
  assert.equal(notLf.next(), undefined);
  notLf.push(Buffer.from('X\n'));
  const result = notLf.next();
  assert.equal(outcome(result), 'binary', 'a CR followed by anything else is a lone CR');
});

test('after a refusal next() keeps returning the same refusal, even when valid lines follow', () => {
  for (const [bad, code] of [
    [Buffer.from([0x00]), 'binary'],
    [Buffer.from('x'.repeat(MAX_LINE_BYTES + 1)), 'too-long'],
  ] as const) {
    const reader = new LineReader();
    reader.push(Buffer.concat([Buffer.from('PING\n'), bad]));
    assert.deepEqual(reader.next(), { ok: true, line: 'PING' });
    const failure = reader.next();
    assert.equal(outcome(failure), code);
    reader.push(Buffer.from('PONG\nPONG\n'));
    for (let i = 0; i < 3; i++) assert.deepEqual(reader.next(), failure);
  }
});

test('a smaller limit can be set per reader', () => {
  const reader = new LineReader(8);
  reader.push(Buffer.from('1234567\n12345678\n'));
  assert.deepEqual(reader.next(), { ok: true, line: '1234567' });
  const result = reader.next();
  assert.equal(outcome(result), 'too-long');
});
