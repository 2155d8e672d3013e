import { test } from 'node:test';
import assert from 'node:assert/strict';
import { proxyHeaderV1, proxyHeaderV2 } from '../../src/protocol/proxy-header.js';
import { parseProxyHeader } from '../../src/protocol/proxy-parse.js';

const V4 = { clientAddress: '203.0.113.7', clientPort: 51234, serverAddress: '198.51.100.1', serverPort: 8081 };
const V6 = { clientAddress: '2001:db8::7', clientPort: 443, serverAddress: '::1', serverPort: 8081 };
const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** Feeds the bytes one at a time, as a slow peer sends them: 'more' until the last one. */
function byteByByte(bytes: Buffer): ReturnType<typeof parseProxyHeader> {
  for (let n = 1; n < bytes.length; n++) assert.equal(parseProxyHeader(bytes.subarray(0, n)).state, 'more', `after ${n} of ${bytes.length} bytes`);
  return parseProxyHeader(bytes);
}

const v2 = (versionCommand: number, family: number, body: Buffer): Buffer => {
  const head = Buffer.alloc(4);
  head[0] = versionCommand;
  head[1] = family;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([SIGNATURE, head, body]);
};

test('PROXY parse: the v1 and v2 headers this relay writes read back, fed a byte at a time', () => {
  for (const ends of [V4, V6]) {
    for (const header of [proxyHeaderV1(ends), proxyHeaderV2(ends)]) {
      assert.deepEqual(byteByByte(header), { state: 'done', length: header.length, ends });
    }
  }
});

test('PROXY parse: the bytes after the header are not part of it', () => {
  const header = proxyHeaderV1(V4);
  const parsed = parseProxyHeader(Buffer.concat([header, Buffer.from('GET / HTTP/1.1\r\n')]));
  assert.equal(parsed.state === 'done' && parsed.length, header.length);
});

test('PROXY parse: v1 UNKNOWN, v2 LOCAL and v2 UNSPEC keep the connection addresses', () => {
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), { state: 'done', length: 15, ends: undefined });
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN ff::1 ::1 1 2\r\n')).state, 'done');
  const local = v2(0x20, 0x11, Buffer.alloc(12));
  assert.deepEqual(parseProxyHeader(local), { state: 'done', length: 28, ends: undefined });
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x00, Buffer.alloc(0))), { state: 'done', length: 16, ends: undefined });
});

test('PROXY parse: v2 TLVs after the addresses are skipped; an IPv4-mapped source reads as such', () => {
  const withTlv = Buffer.concat([proxyHeaderV2(V4).subarray(16), Buffer.from([0x04, 0x00, 0x02, 0xab, 0xcd])]);
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x11, withTlv)), { state: 'done', length: 16 + 17, ends: V4 });
  const mapped = proxyHeaderV2({ ...V6, clientAddress: '::ffff:192.0.2.1' });
  const parsed = parseProxyHeader(mapped);
  assert.equal(parsed.state === 'done' && parsed.ends?.clientAddress, '::ffff:192.0.2.1');
});

test('PROXY parse: anything else is refused with a reason, never waited on for more', () => {
  const bad = (bytes: Buffer | string, says: RegExp): void => {
    const parsed = parseProxyHeader(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
    assert.equal(parsed.state, 'bad', String(bytes));
    assert.match(parsed.state === 'bad' ? parsed.reason : '', says);
  };
  bad('GET / HTTP/1.1\r\n', /does not begin with a PROXY header/);
  bad('\x16\x03\x01', /does not begin/);
  bad('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', /CRLF/);
  bad('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', /must be PROXY TCP4\|TCP6/);
  bad('PROXY TCP4 ::1 5.6.7.8 1 2\r\n', /not TCP4/);
  bad('PROXY TCP6 1.2.3.4 ::1 1 2\r\n', /not TCP6/);
  bad('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n', /ports/);
  bad('PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n', /ports/);
  bad(`PROXY UNKNOWN ${'x'.repeat(100)}`, /longer than 107/);
  bad(v2(0x11, 0x11, Buffer.alloc(12)), /version 1/);
  bad(v2(0x22, 0x11, Buffer.alloc(12)), /command 2/);
  bad(v2(0x21, 0x12, Buffer.alloc(12)), /0x12 \(only TCP/);
  bad(v2(0x21, 0x31, Buffer.alloc(216)), /0x31/);
  bad(v2(0x21, 0x11, Buffer.alloc(8)), /too short/);
  bad(v2(0x21, 0x21, Buffer.alloc(20)), /too short/);
  const huge = Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]);
  bad(huge, /65535 bytes after its head/);
});
