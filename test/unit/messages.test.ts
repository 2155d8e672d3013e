import { test } from 'node:test';
import assert from 'node:assert/strict';
import { joinHostPort, splitHostPort } from '../../src/protocol/addresses.js';
import { formatMessage } from '../../src/protocol/format.js';
import { ERROR_CODES, MAX_LINE_BYTES, type Message } from '../../src/protocol/messages.js';
import { parseLine, parseRelayLine, parseServiceLine } from '../../src/protocol/parse.js';
import { LineReader } from '../../src/protocol/line-reader.js';
import { EXAMPLES, HEX64, PRINTABLE, TOKEN, TOKEN2, parsed, withoutLf } from './message-examples.js';

test('every message kind survives format then parse unchanged', () => {
  const kinds = new Set<string>();
  for (const msg of EXAMPLES) {
    kinds.add(msg.kind);
    const line = formatMessage(msg);
    assert.equal(line.indexOf('\n'), line.length - 1, `exactly one LF, at the end: ${JSON.stringify(line)}`);
    assert.match(withoutLf(line), PRINTABLE);
    assert.ok(Buffer.byteLength(line) <= MAX_LINE_BYTES);
    assert.deepEqual(parsed(withoutLf(line)), msg);
  }
  const allKinds = [
    'HELLO',
    'PROOF',
    'PONG',
    'LEAVE',
    'DATA',
    'IDLE',
    'AUTH',
    'OK',
    'CONNECT',
    'CLIENT',
    'PING',
    'SHUTDOWN',
    'REJOIN',
    'PROBE',
    'NODES',
    'PROBED',
    'ERR',
    'DRAIN',
    'HEALTH',
    'DECLINE',
  ];
  assert.deepEqual([...kinds].sort(), allKinds.sort());
});

test('messages are formatted exactly as the wire format says', () => {
  assert.equal(formatMessage({ kind: 'HELLO', version: 1 }), 'HELLO 1\n');
  assert.equal(formatMessage({ kind: 'HELLO', version: 1, host: 'a.example', port: 80, resume: TOKEN, warm: 2 }), `HELLO 1 host=a.example port=80 resume=${TOKEN} warm=2\n`);
  assert.equal(
    formatMessage({ kind: 'OK', host: '::1', port: 9000, dataPort: 7001, heartbeatMs: 5000, resume: TOKEN, warmToken: TOKEN2 }),
    `OK [::1]:9000 data=7001 heartbeat=5000 resume=${TOKEN} warm=${TOKEN2}\n`,
  );
  assert.equal(formatMessage({ kind: 'CONNECT', token: TOKEN, clientAddress: '10.1.2.3', clientPort: 4567 }), `CONNECT ${TOKEN} 10.1.2.3 4567\n`);
  assert.equal(formatMessage({ kind: 'CLIENT', clientAddress: '10.1.2.3', clientPort: 4567, serverAddress: '10.9.9.9', serverPort: 40000 }), 'CLIENT 10.1.2.3 4567 10.9.9.9 40000\n');
  assert.equal(formatMessage({ kind: 'ERR', code: 'bad-token', text: 'unknown token' }), 'ERR bad-token unknown token\n');
  assert.equal(formatMessage({ kind: 'PING' }), 'PING\n');
});

test('a line ending in CRLF parses the same as one ending in LF', () => {
  for (const msg of EXAMPLES) {
    assert.deepEqual(parsed(`${withoutLf(formatMessage(msg))}\r`), msg);
  }
});

test('options may come in any order', () => {
  assert.deepEqual(parsed(`HELLO 1 warm=3 resume=${TOKEN} port=9000 host=svc`), {
    kind: 'HELLO',
    version: 1,
    host: 'svc',
    port: 9000,
    resume: TOKEN,
    warm: 3,
  });
  assert.deepEqual(parsed(`OK h.example:9000 resume=${TOKEN} heartbeat=100 data=7001`), {
    kind: 'OK',
    host: 'h.example',
    port: 9000,
    dataPort: 7001,
    heartbeatMs: 100,
    resume: TOKEN,
  });
});

test('unknown options from a newer peer of the same version are ignored, not refused', () => {
  assert.deepEqual(parsed('HELLO 1 host=svc compress=zstd'), { kind: 'HELLO', version: 1, host: 'svc' });
  assert.deepEqual(parsed(`OK h:1 data=2 heartbeat=3 resume=${TOKEN} future=yes`), {
    kind: 'OK',
    host: 'h',
    port: 1,
    dataPort: 2,
    heartbeatMs: 3,
    resume: TOKEN,
  });
});

test('HELLO of another protocol version parses to just its version, whatever follows', () => {
  assert.deepEqual(parsed('HELLO 2'), { kind: 'HELLO', version: 2 });
  assert.deepEqual(parsed('HELLO 2 host=svc port=99999 flag =x host=again'), { kind: 'HELLO', version: 2 });
  assert.deepEqual(parsed('HELLO 999999 anything at all'), { kind: 'HELLO', version: 999999 });
});

/** [line, what the reason must say] for lines that must be refused as bad-line. */
const MALFORMED: Array<[string, RegExp]> = [
  // empty and unknown
  ['', /empty/],
  ['\r', /empty/],
  ['HELO 1', /unknown message "HELO"/],
  ['hello 1', /unknown message "hello"/],
  ['ping', /unknown message/],
  [' PING', /unknown message ""/],
  [`${'X'.repeat(500)} 1`, /unknown message "X{20}\.\.\."/],
  // arguments where none are allowed
  ['PING now', /PING takes no arguments/],
  ['PONG ', /PONG takes no arguments/],
  ['SHUTDOWN soon', /SHUTDOWN takes no arguments/],
  // tokens: missing, extra, wrong length, wrong case, not hex
  ['DATA', /DATA needs a token of 32 hex digits/],
  [`DATA ${TOKEN} ${TOKEN}`, /DATA needs a token/],
  [`DATA ${TOKEN} `, /DATA needs a token/],
  [`DATA ${TOKEN.slice(1)}`, /DATA needs a token/],
  [`DATA ${TOKEN}0`, /DATA needs a token/],
  [`DATA ${TOKEN.toUpperCase()}`, /DATA needs a token/],
  [`DATA ${TOKEN.slice(1)}g`, /DATA needs a token/],
  ['IDLE', /IDLE needs a token/],
  [`IDLE ${TOKEN.slice(2)}`, /IDLE needs a token/],
  [`IDLE ${TOKEN2.toUpperCase()}`, /IDLE needs a token/],
  ['AUTH', /AUTH needs 64 hex digits/],
  [`AUTH ${HEX64.slice(1)}`, /AUTH needs 64 hex digits/],
  [`AUTH ${HEX64} x`, /AUTH needs 64 hex digits/],
  ['PROOF', /PROOF needs 64 hex digits/],
  [`PROOF ${HEX64}0`, /PROOF needs 64 hex digits/],
  [`PROOF ${HEX64.toUpperCase()}`, /PROOF needs 64 hex digits/],
  // CONNECT / CLIENT
  ['CONNECT', /CONNECT needs TOKEN ADDRESS PORT/],
  [`CONNECT ${TOKEN} 10.0.0.1`, /CONNECT needs TOKEN ADDRESS PORT/],
  [`CONNECT ${TOKEN} 10.0.0.1 5 6`, /CONNECT needs TOKEN ADDRESS PORT/],
  [`CONNECT ${TOKEN.toUpperCase()} 10.0.0.1 5`, /CONNECT needs TOKEN ADDRESS PORT/],
  [`CONNECT ${TOKEN} client.example 5`, /CONNECT needs .*address/],
  [`CONNECT ${TOKEN} 10.0.0.1 65536`, /CONNECT needs .*address/],
  [`CONNECT ${TOKEN} 10.0.0.1 05`, /CONNECT needs .*address/],
  [`CONNECT ${TOKEN} 10.0.0.1 -1`, /CONNECT needs .*address/],
  ['CLIENT', /CLIENT needs CLIENT-ADDRESS CLIENT-PORT SERVER-ADDRESS SERVER-PORT/],
  ['CLIENT 10.0.0.1', /CLIENT needs CLIENT-ADDRESS/],
  ['CLIENT 10.0.0.1 5', /CLIENT needs CLIENT-ADDRESS/],
  ['CLIENT 10.0.0.1 5 10.0.0.2', /CLIENT needs CLIENT-ADDRESS/],
  ['CLIENT 10.0.0.1 5 10.0.0.2 6 7', /CLIENT needs CLIENT-ADDRESS/],
  ['CLIENT 10.0.0.1 65536 10.0.0.2 6', /CLIENT needs .*address/],
  ['CLIENT 10.0.0.1 00 10.0.0.2 6', /CLIENT needs .*address/],
  ['CLIENT [::1] 80 10.0.0.2 6', /CLIENT needs .*address/],
  ['CLIENT 10.0.0.1 5 10.0.0.2 65536', /CLIENT needs .*address/],
  ['CLIENT 10.0.0.1 5 10.0.0.2 06', /CLIENT needs .*address/],
  ['CLIENT 10.0.0.1 5 relay.example 6', /CLIENT needs .*address/],
  // HELLO version and options
  ['HELLO', /HELLO needs a protocol version/],
  ['HELLO x', /HELLO needs a protocol version/],
  ['HELLO 0', /HELLO needs a protocol version/],
  ['HELLO 01', /HELLO needs a protocol version/],
  ['HELLO -1', /HELLO needs a protocol version/],
  ['HELLO 1 port=0', /port= must be 1-65535/],
  ['HELLO 1 port=65536', /port= must be 1-65535/],
  ['HELLO 1 port=080', /port= must be 1-65535/],
  ['HELLO 1 port=', /port= must be 1-65535/],
  ['HELLO 1 port=8o', /port= must be 1-65535/],
  ['HELLO 1 port=80 port=81', /option "port" given twice/],
  ['HELLO 1 host=a host=a', /option "host" given twice/],
  ['HELLO 1 host', /option "host" is not key=value/],
  ['HELLO 1 =svc', /option "=svc" is not key=value/],
  ['HELLO 1  host=svc', /option "" is not key=value/],
  ['HELLO 1 host=svc ', /option "" is not key=value/],
  ['HELLO 1 host=', /host= is not a host name/],
  ['HELLO 1 host=bad/host', /host= is not a host name/],
  ['HELLO 1 host=-leading-dash', /host= is not a host name/],
  ['HELLO 1 host=[::1', /host= is not a host name/],
  [`HELLO 1 host=${'a'.repeat(254)}`, /host= is not a host name/],
  ['HELLO 1 resume=abc', /resume= must be 32 hex digits/],
  [`HELLO 1 resume=${TOKEN.toUpperCase()}`, /resume= must be 32 hex digits/],
  ['HELLO 1 warm=10000', /warm= must be 0-9999/],
  ['HELLO 1 warm=-1', /warm= must be 0-9999/],
  ['HELLO 1 warm=', /warm= must be 0-9999/],
  // OK
  ['OK', /OK needs HOST:PORT/],
  [`OK relay.example data=1 heartbeat=1 resume=${TOKEN}`, /OK needs HOST:PORT/],
  [`OK relay.example:0 data=1 heartbeat=1 resume=${TOKEN}`, /OK needs HOST:PORT/],
  [`OK relay.example:65536 data=1 heartbeat=1 resume=${TOKEN}`, /OK needs HOST:PORT/],
  [`OK relay.example:080 data=1 heartbeat=1 resume=${TOKEN}`, /OK needs HOST:PORT/],
  [`OK ::1:80 data=1 heartbeat=1 resume=${TOKEN}`, /OK needs HOST:PORT/],
  [`OK :80 data=1 heartbeat=1 resume=${TOKEN}`, /OK needs HOST:PORT/],
  [`OK h:80 heartbeat=1 resume=${TOKEN}`, /OK needs data=PORT/],
  [`OK h:80 data=0 heartbeat=1 resume=${TOKEN}`, /OK needs data=PORT/],
  [`OK h:80 data=65536 heartbeat=1 resume=${TOKEN}`, /OK needs data=PORT/],
  [`OK h:80 data=1 resume=${TOKEN}`, /OK needs heartbeat=MILLISECONDS/],
  [`OK h:80 data=1 heartbeat=0 resume=${TOKEN}`, /OK needs heartbeat=MILLISECONDS/],
  [`OK h:80 data=1 heartbeat=10000000 resume=${TOKEN}`, /OK needs heartbeat=MILLISECONDS/],
  ['OK h:80 data=1 heartbeat=1', /OK needs resume=KEY/],
  ['OK h:80 data=1 heartbeat=1 resume=abc', /OK needs resume=KEY/],
  [`OK h:80 data=1 heartbeat=1 resume=${'a'.repeat(32)} nodes=h1:7000,,h3:7000`, /nodes= must be up to 16 comma-separated HOST:PORT/],
  [`OK h:80 data=1 heartbeat=1 resume=${'a'.repeat(32)} nodes=h1`, /nodes= must be up to 16/],
  [`OK h:80 data=1 heartbeat=1 resume=${'a'.repeat(32)} nodes=${Array.from({ length: 17 }, (_, i) => `h${i}:7000`).join(',')}`, /nodes= must be up to 16/],
  [`OK h:80 data=1 heartbeat=1 resume=${TOKEN} warm=abc`, /warm= must be 32 hex digits/],
  [`OK h:80 data=1 data=2 heartbeat=1 resume=${TOKEN}`, /option "data" given twice/],
  [`OK h:80 data=1 heartbeat=1 resume=${TOKEN} flag`, /option "flag" is not key=value/],
  // NODES
  ['NODES', /NODES needs 1 to 16 comma-separated HOST:PORT/],
  ['NODES ', /NODES needs 1 to 16/],
  ['NODES h1:7000 h2:7000', /NODES needs 1 to 16/],
  ['NODES h1:7000,,h2:7000', /NODES needs 1 to 16/],
  ['NODES h1', /NODES needs 1 to 16/],
  ['NODES ::1:7000', /NODES needs 1 to 16/],
  [`NODES ${Array.from({ length: 17 }, (_, i) => `h${i}:7000`).join(',')}`, /NODES needs 1 to 16/],
  // ERR
  ['ERR', /ERR needs a known code/],
  ['ERR nope something broke', /ERR needs a known code/],
  ['ERR AUTH wrong secret', /ERR needs a known code/],
  ['ERR  auth', /ERR needs a known code/],
];

test('every malformed line is refused as bad-line with a reason naming the rule it broke', () => {
  for (const [line, reason] of MALFORMED) {
    const result = parseLine(line);
    assert.equal(result.ok, false, `expected ${JSON.stringify(line)} to be refused, got ${JSON.stringify(result)}`);
    if (result.ok) continue;
    assert.equal(result.code, 'bad-line', JSON.stringify(line));
    assert.match(result.reason, reason, JSON.stringify(line));
    assert.equal(result.spokeHttp, undefined, `${JSON.stringify(line)} is not HTTP`);
  }
});

test('a malformed line with CRLF is refused for the same reason as with LF', () => {
  for (const [line, reason] of MALFORMED) {
    if (line.endsWith('\r')) continue;
    const result = parseLine(`${line}\r`);
    assert.equal(result.ok, false, JSON.stringify(line));
    if (!result.ok) assert.match(result.reason, reason, JSON.stringify(line));
  }
});

test('an HTTP request line is refused and flagged spokeHttp, so the relay can answer in HTTP', () => {
  for (const line of ['GET / HTTP/1.1', 'GET /index.html HTTP/1.0\r', 'POST /api?x=1 HTTP/1.1', 'CONNECT relay.example:443 HTTP/1.1', 'OPTIONS * HTTP/1.1', 'PRI * HTTP/2.0']) {
    const result = parseLine(line);
    assert.deepEqual(result.ok ? result : { ok: result.ok, code: result.code, spokeHttp: result.spokeHttp }, { ok: false, code: 'bad-line', spokeHttp: true }, JSON.stringify(line));
  }
});

test('ERR keeps its text, spaces included, and an ERR without text has empty text', () => {
  assert.deepEqual(parsed('ERR auth wrong  secret, try again'), { kind: 'ERR', code: 'auth', text: 'wrong  secret, try again' });
  assert.deepEqual(parsed('ERR shutdown'), { kind: 'ERR', code: 'shutdown', text: '' });
  assert.deepEqual(parsed('ERR shutdown '), { kind: 'ERR', code: 'shutdown', text: '' });
});

test('ERR text is sanitised to printable ASCII so the line stays one valid line', () => {
  const line = formatMessage({ kind: 'ERR', code: 'auth', text: 'bad\nline\r\u0000é 😀 tab\there\x7f' });
  assert.equal(line, 'ERR auth bad?line??? ?? tab?here?\n');
  const reader = new LineReader();
  reader.push(Buffer.from(line, 'latin1'));
  assert.deepEqual(reader.next(), { ok: true, line: 'ERR auth bad?line??? ?? tab?here?' });
  assert.equal(reader.next(), undefined);
});

test('ERR text is capped so the formatted line fits MAX_LINE_BYTES for every code', () => {
  for (const code of ERROR_CODES) {
    for (const text of ['x'.repeat(5000), '€'.repeat(5000), 'word '.repeat(1000)]) {
      const line = formatMessage({ kind: 'ERR', code, text });
      assert.ok(Buffer.byteLength(line) <= MAX_LINE_BYTES, `${code}: ${Buffer.byteLength(line)} bytes`);
      // What a peer's LineReader accepts and parseLine reads back.
      const reader = new LineReader();
      reader.push(Buffer.from(line));
      const read = reader.next();
      assert.ok(read?.ok, `${code}: ${JSON.stringify(read)}`);
      const msg = parsed(read.line);
      assert.equal(msg.kind, 'ERR');
      if (msg.kind !== 'ERR') continue;
      assert.equal(msg.code, code);
      assert.ok(msg.text.length > 0, 'some of the text survives');
      assert.ok(text.replace(/[^\x20-\x7e]/g, '?').startsWith(msg.text), 'what survives is the start of the text');
    }
  }
});

test('a control character inside a line is refused as binary, even when the line reached parseLine another way', () => {
  for (const line of ['PING\r\r', 'PONG\t', 'ERR auth \x00', 'HELLO 1 host=a\x7f']) {
    const result = parseLine(line);
    assert.equal(result.ok, false, JSON.stringify(line));
    if (!result.ok) assert.equal(result.code, 'binary', JSON.stringify(line));
  }
});

test('an ERR whose text starts like an HTTP version still parses as ERR', () => {
  const msg: Message = { kind: 'ERR', code: 'bad-line', text: 'HTTP/1.1 requests are not spoken on this port' };
  assert.deepEqual(parseLine(withoutLf(formatMessage(msg))), { ok: true, msg });
});

test('an ERR line the LineReader accepts re-formats without losing text', () => {
  const line = `ERR auth ${'x'.repeat(MAX_LINE_BYTES - 'ERR auth '.length - 1)}`;
  assert.equal(Buffer.byteLength(`${line}\n`), MAX_LINE_BYTES);
  const msg = parsed(line);
  assert.deepEqual(parsed(withoutLf(formatMessage(msg))), msg);
});

test('IPv6 hosts get brackets in host:port and lose them when split', () => {
  assert.equal(joinHostPort('::1', 443), '[::1]:443');
  assert.equal(joinHostPort('[::1]', 443), '[::1]:443');
  assert.equal(joinHostPort('2001:db8::1', 8080), '[2001:db8::1]:8080');
  assert.equal(joinHostPort('127.0.0.1', 80), '127.0.0.1:80');
  assert.equal(joinHostPort('relay.example.com', 7000), 'relay.example.com:7000');

  assert.deepEqual(splitHostPort('[::1]:443'), { host: '::1', port: 443 });
  assert.deepEqual(splitHostPort('[2001:db8::1]:8080'), { host: '2001:db8::1', port: 8080 });
  assert.deepEqual(splitHostPort('127.0.0.1:80'), { host: '127.0.0.1', port: 80 });
  assert.deepEqual(splitHostPort('relay.example.com:65535'), { host: 'relay.example.com', port: 65535 });
  assert.deepEqual(splitHostPort('[10.0.0.1]:1'), { host: '10.0.0.1', port: 1 });

  assert.equal(splitHostPort('::1:443'), undefined, 'an IPv6 literal without brackets is ambiguous');
  assert.equal(splitHostPort('2001:db8::1:80'), undefined);
  assert.equal(splitHostPort('[::1]'), undefined);
  assert.equal(splitHostPort('[::1:443'), undefined);
  assert.equal(splitHostPort('relay.example.com'), undefined);
  assert.equal(splitHostPort(':80'), undefined);
  assert.equal(splitHostPort('host:'), undefined);
  assert.equal(splitHostPort('host:0'), undefined);
  assert.equal(splitHostPort('host:65536'), undefined);
  assert.equal(splitHostPort('host:080'), undefined);
  assert.equal(splitHostPort(''), undefined);

  for (const host of ['::1', '2001:db8::1', '::ffff:192.0.2.1', '192.0.2.1', 'relay.example.com', 'localhost']) {
    for (const port of [1, 80, 65535]) {
      assert.deepEqual(splitHostPort(joinHostPort(host, port)), { host, port });
    }
  }
});

test('an OK carrying an IPv6 public address round-trips with brackets on the wire', () => {
  const msg: Message = { kind: 'OK', host: 'fd00::2', port: 40001, dataPort: 7001, heartbeatMs: 1000, resume: TOKEN };
  const line = formatMessage(msg);
  assert.ok(line.startsWith('OK [fd00::2]:40001 '), line);
  assert.deepEqual(parsed(withoutLf(line)), msg);
});

test('HELLO tenant= names the tenant to register as; a malformed name is a bad line', () => {
  assert.deepEqual(parsed('HELLO 1 host=svc tenant=alice.example_1-x'), { kind: 'HELLO', version: 1, host: 'svc', tenant: 'alice.example_1-x' });
  assert.equal(formatMessage({ kind: 'HELLO', version: 1, host: 'svc', tenant: 'alice' }), 'HELLO 1 host=svc tenant=alice\n');
  for (const bad of ['tenant=', 'tenant=al/ice', `tenant=${'a'.repeat(65)}`]) {
    const result = parseLine(`HELLO 1 ${bad}`);
    assert.equal(result.ok, false, bad);
    assert.equal(result.ok ? '' : result.code, 'bad-line');
  }
});

test('each direction has its own parser: a message of the other side is a bad line', () => {
  const token = 'a'.repeat(32);
  assert.deepEqual(parseServiceLine(`DATA ${token}`), { ok: true, msg: { kind: 'DATA', token } });
  assert.deepEqual(parseRelayLine(`CONNECT ${token} 127.0.0.1 5000`), { ok: true, msg: { kind: 'CONNECT', token, clientAddress: '127.0.0.1', clientPort: 5000 } });
  for (const both of ['PING', 'PONG']) {
    assert.equal(parseServiceLine(both).ok, true);
    assert.equal(parseRelayLine(both).ok, true);
  }
  const fromRelay = parseServiceLine(`CONNECT ${token} 127.0.0.1 5000`);
  assert.deepEqual(fromRelay, { ok: false, code: 'bad-line', reason: 'CONNECT is not a message a service sends' });
  const fromService = parseRelayLine('HELLO 1');
  assert.deepEqual(fromService, { ok: false, code: 'bad-line', reason: 'HELLO is not a message the relay sends' });
  // A line that does not parse at all fails the same way in both directions.
  assert.deepEqual(parseServiceLine('NOPE'), parseRelayLine('NOPE'));
});
