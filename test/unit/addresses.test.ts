import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv6 } from 'node:net';
import { ipv6Groups, plainAddress } from '../../src/protocol/addresses.js';

const hex = (groups: number[] | undefined): string | undefined => groups?.map((n) => n.toString(16)).join(':');

test('IPv6: the full form is read group by group, in either case', () => {
  assert.equal(hex(ipv6Groups('1:2:3:4:5:6:7:8')), '1:2:3:4:5:6:7:8');
  assert.equal(hex(ipv6Groups('2001:0DB8:0001:0002:ffff:FFFF:0000:fffe')), '2001:db8:1:2:ffff:ffff:0:fffe');
});

test('IPv6: :: stands for the missing zero groups at the start, middle or end', () => {
  assert.equal(hex(ipv6Groups('::')), '0:0:0:0:0:0:0:0');
  assert.equal(hex(ipv6Groups('::1')), '0:0:0:0:0:0:0:1');
  assert.equal(hex(ipv6Groups('::2:3:4:5:6:7:8')), '0:2:3:4:5:6:7:8');
  assert.equal(hex(ipv6Groups('2001:db8::1')), '2001:db8:0:0:0:0:0:1');
  assert.equal(hex(ipv6Groups('1:2:3::6:7:8')), '1:2:3:0:0:6:7:8');
  assert.equal(hex(ipv6Groups('2001:db8::')), '2001:db8:0:0:0:0:0:0');
  assert.equal(hex(ipv6Groups('1:2:3:4:5:6:7::')), '1:2:3:4:5:6:7:0');
});

test('IPv6: an IPv4-mapped address reads the same dotted or in hex', () => {
  const mapped = '0:0:0:0:0:ffff:c000:201';
  assert.equal(hex(ipv6Groups('::ffff:192.0.2.1')), mapped);
  assert.equal(hex(ipv6Groups('::FFFF:c000:0201')), mapped);
  assert.equal(hex(ipv6Groups('0:0:0:0:0:ffff:192.0.2.1')), mapped);
  assert.equal(hex(ipv6Groups('::1.2.3.4')), '0:0:0:0:0:0:102:304');
  assert.equal(hex(ipv6Groups('1:2:3:4:5:6:255.255.255.255')), '1:2:3:4:5:6:ffff:ffff');
});

test('IPv6: a zone id is dropped, an empty or second one is refused', () => {
  assert.equal(hex(ipv6Groups('fe80::1%eth0')), 'fe80:0:0:0:0:0:0:1');
  assert.equal(hex(ipv6Groups('fe80::1%3')), 'fe80:0:0:0:0:0:0:1');
  assert.equal(ipv6Groups('fe80::1%'), undefined);
  assert.equal(ipv6Groups('fe80::1%a%b'), undefined);
});

test('IPv6: anything that is not an address is undefined, never thrown on', () => {
  const invalid = [
    '',
    ':',
    ':::',
    '192.0.2.1', // IPv4 without IPv6 around it
    'relay.example.com',
    '1:2:3', // too few groups, no ::
    '1:2:3:4:5:6:7:8:9', // too many groups
    '1:2:3:4::5:6:7:8', // :: with no group left for it
    '1::2::3', // two ::
    '1:2:3:4:5:6:7:g', // not hex
    '1:2:3:4:5:6:7:-1',
    '12345::', // a group over ffff
    '00001::', // five digits, even if the value fits
    ':1:2:3:4:5:6:7', // a lone leading colon
    '1:2:3:4:5:6:7:', // a lone trailing colon
    '::ffff:192.0.2.256', // an octet over 255
    '::ffff:192.0.2', // three octets
    '::ffff:01.2.3.4', // a leading zero in an octet
    '1.2.3.4::', // dotted IPv4 not at the end
    '::1.2.3.4:5',
    '1:2:3:4:5:6:7:1.2.3.4', // nine groups with the IPv4 tail
  ];
  for (const text of invalid) assert.equal(ipv6Groups(text), undefined, JSON.stringify(text));
});

test('IPv6: the parser accepts exactly what node:net calls IPv6', () => {
  const samples = ['::', '::1', '1:2:3:4:5:6:7:8', '::ffff:192.0.2.1', 'fe80::1%eth0', '1:2:3:4::5:6:7:8', '1::2::3', '12345::', '::ffff:1.2.3.256', '::1.2.3.4:5'];
  for (const text of samples) assert.equal(ipv6Groups(text) !== undefined, isIPv6(text), JSON.stringify(text));
});

test('a v6-mapped IPv4 address is shown as plain IPv4; others unchanged', () => {
  assert.equal(plainAddress('::ffff:192.0.2.1'), '192.0.2.1');
  assert.equal(plainAddress('192.0.2.1'), '192.0.2.1');
  assert.equal(plainAddress('2001:db8::1'), '2001:db8::1');
  assert.equal(plainAddress('::1'), '::1');
});
