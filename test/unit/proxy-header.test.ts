import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ipv6Bytes, proxyHeaderV1, proxyHeaderV2 } from '../../src/protocol/proxy-header.js';

const SIGNATURE = '0d0a0d0a000d0a515549540a';

test('PROXY v1: TCP4 and TCP6 lines exactly as the specification lays them out', () => {
  assert.equal(proxyHeaderV1({ clientAddress: '203.0.113.7', clientPort: 51234, serverAddress: '198.51.100.1', serverPort: 8081 }).toString(), 'PROXY TCP4 203.0.113.7 198.51.100.1 51234 8081\r\n');
  assert.equal(proxyHeaderV1({ clientAddress: '2001:db8::7', clientPort: 1, serverAddress: '::1', serverPort: 65535 }).toString(), 'PROXY TCP6 2001:db8::7 ::1 1 65535\r\n');
});

test('PROXY v1: mixed address families become UNKNOWN rather than a wrong header', () => {
  assert.equal(proxyHeaderV1({ clientAddress: '::1', clientPort: 1, serverAddress: '127.0.0.1', serverPort: 2 }).toString(), 'PROXY UNKNOWN\r\n');
});

test('PROXY v2: IPv4 header is signature, 0x21, 0x11, length 12, addresses then ports, big-endian', () => {
  const header = proxyHeaderV2({ clientAddress: '203.0.113.7', clientPort: 51234, serverAddress: '198.51.100.1', serverPort: 8081 });
  assert.equal(header.length, 16 + 12);
  assert.equal(header.subarray(0, 12).toString('hex'), SIGNATURE);
  assert.equal(header[12], 0x21);
  assert.equal(header[13], 0x11);
  assert.equal(header.readUInt16BE(14), 12);
  assert.deepEqual([...header.subarray(16, 20)], [203, 0, 113, 7]);
  assert.deepEqual([...header.subarray(20, 24)], [198, 51, 100, 1]);
  assert.equal(header.readUInt16BE(24), 51234);
  assert.equal(header.readUInt16BE(26), 8081);
});

test('PROXY v2: IPv6 header has family 0x21 and 36 bytes of addresses and ports', () => {
  const header = proxyHeaderV2({ clientAddress: '2001:db8::7', clientPort: 443, serverAddress: '::1', serverPort: 8081 });
  assert.equal(header.length, 16 + 36);
  assert.equal(header[13], 0x21);
  assert.equal(header.readUInt16BE(14), 36);
  assert.equal(header.subarray(16, 32).toString('hex'), '20010db8000000000000000000000007');
  assert.equal(header.subarray(32, 48).toString('hex'), '00000000000000000000000000000001');
  assert.equal(header.readUInt16BE(48), 443);
  assert.equal(header.readUInt16BE(50), 8081);
});

test('PROXY v2: mixed families send UNSPEC with no address block', () => {
  const header = proxyHeaderV2({ clientAddress: '::1', clientPort: 1, serverAddress: '127.0.0.1', serverPort: 2 });
  assert.equal(header.length, 16);
  assert.equal(header[13], 0x00);
  assert.equal(header.readUInt16BE(14), 0);
});

test('IPv6 text to bytes: compressed forms, full form and an embedded IPv4 tail', () => {
  assert.equal(ipv6Bytes('::').toString('hex'), '0'.repeat(32));
  assert.equal(ipv6Bytes('fe80::1%eth0').toString('hex'), 'fe800000000000000000000000000001');
  assert.equal(ipv6Bytes('1:2:3:4:5:6:7:8').toString('hex'), '00010002000300040005000600070008');
  assert.equal(ipv6Bytes('::ffff:192.0.2.1').toString('hex'), '00000000000000000000ffffc0000201');
  assert.equal(ipv6Bytes('2001:db8::').toString('hex'), '20010db8000000000000000000000000');
});
