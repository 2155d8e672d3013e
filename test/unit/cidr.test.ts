import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatCidr, parseCidr, parseCidrList, permits, type AccessList, type Cidr } from '../../src/protocol/cidr.js';

const cidr = (text: string): Cidr => {
  const parsed = parseCidr(text);
  assert.ok(typeof parsed !== 'string', `${text}: ${String(parsed)}`);
  return parsed;
};
const list = (allow: string[], deny: string[] = []): AccessList => ({ allow: allow.map(cidr), deny: deny.map(cidr) });

test('CIDR: IPv4, IPv6 and bare addresses read back in canonical form', () => {
  assert.equal(formatCidr(cidr('10.0.0.0/8')), '10.0.0.0/8');
  assert.equal(formatCidr(cidr('0.0.0.0/0')), '0.0.0.0/0');
  assert.equal(formatCidr(cidr('192.0.2.7')), '192.0.2.7/32');
  assert.equal(formatCidr(cidr('2001:DB8:0:0::/32')), '2001:db8::/32');
  assert.equal(formatCidr(cidr('::1')), '::1/128');
  assert.equal(formatCidr(cidr('::/0')), '::/0');
});

test('CIDR: a range in the IPv4-mapped block is that IPv4 range; a wider one stays IPv6', () => {
  assert.equal(formatCidr(cidr('::ffff:10.0.0.0/104')), '10.0.0.0/8');
  assert.equal(formatCidr(cidr('::ffff:192.0.2.1')), '192.0.2.1/32');
  assert.equal(cidr('::/80').family, 6);
  assert.equal(permits([list(['::/80'])], '::ffff:192.0.2.1'), false, 'a mapped client is IPv4, not in an IPv6 range');
});

test('CIDR: strict parsing refuses what could hide a typo, and says what is wrong', () => {
  const wrong = (text: string, says: RegExp): void => {
    const parsed = parseCidr(text);
    assert.equal(typeof parsed, 'string', text);
    assert.match(parsed as string, says, text);
  };
  wrong('10.0.0.1/8', /bits set past its \/8 \(the range starts at 10\.0\.0\.0\/8\)/);
  wrong('010.0.0.0/8', /not an IPv4 or IPv6 address/);
  wrong('10.0.0.0/33', /prefix length from 0 to 32/);
  wrong('10.0.0.0/08', /prefix length/);
  wrong('10.0.0.0/', /prefix length/);
  wrong('2001:db8::/129', /prefix length from 0 to 128/);
  wrong('fe80::1%eth0', /zone/);
  wrong('10.0.0', /not an IPv4/);
  wrong('example.com/8', /not an IPv4/);
  wrong('2001:db8::1/32', /bits set past/);
  wrong('', /not an IPv4/);
});

test('CIDR lists: commas, blanks around them, the first bad range quoted, a bound on their length', () => {
  const parsed = parseCidrList('10.0.0.0/8, 192.0.2.1 ,2001:db8::/32');
  assert.ok(Array.isArray(parsed));
  assert.deepEqual(parsed.map(formatCidr), ['10.0.0.0/8', '192.0.2.1/32', '2001:db8::/32']);
  assert.match(parseCidrList('10.0.0.0/8,10.0.0.1/8') as string, /"10\.0\.0\.1\/8"/);
  assert.match(parseCidrList('10.0.0.0/8,,192.0.2.1') as string, /empty range/);
  assert.match(parseCidrList(Array.from({ length: 65 }, (_, i) => `10.0.0.${i}`).join(',')) as string, /more than 64/);
});

test('who may connect: allowed by every level that has an allow list, denied by none', () => {
  const relay = list(['10.0.0.0/8', '2001:db8::/32']);
  const tenant = list(['10.1.0.0/16'], ['10.1.2.0/24']);
  const service = list([], ['10.1.3.4']);
  assert.equal(permits([relay, tenant, service], '10.1.1.1'), true);
  assert.equal(permits([relay, tenant, service], '10.2.0.1'), false, 'outside the tenant allow list');
  assert.equal(permits([relay, tenant, service], '10.1.2.9'), false, 'in the tenant deny list');
  assert.equal(permits([relay, tenant, service], '10.1.3.4'), false, 'in the service deny list');
  assert.equal(permits([relay, undefined, service], '2001:db8::5'), true);
  assert.equal(permits([relay], '192.0.2.1'), false);
});

test('who may connect: a service allow list never widens what the level above allows', () => {
  assert.equal(permits([list(['127.0.0.0/29']), list(['0.0.0.0/0'])], '127.0.0.9'), false);
  assert.equal(permits([list(['127.0.0.0/8']), list(['127.0.0.5'])], '127.0.0.6'), false);
  assert.equal(permits([list(['127.0.0.0/8']), list(['127.0.0.5'])], '127.0.0.5'), true);
});

test('who may connect: IPv4-mapped clients are their IPv4 address; IPv6 ranges never match IPv4 clients', () => {
  assert.equal(permits([list(['192.0.2.0/24'])], '::ffff:192.0.2.1'), true);
  assert.equal(permits([list([], ['192.0.2.1'])], '::ffff:192.0.2.1'), false);
  assert.equal(permits([list(['::/0'])], '192.0.2.1'), false);
  assert.equal(permits([list(['::/0'])], '::1'), true);
  assert.equal(permits([list(['0.0.0.0/0'])], '::1'), false);
});

test('who may connect: no lists let everyone in; an unreadable address passes no list', () => {
  assert.equal(permits([undefined, undefined], '192.0.2.1'), true);
  assert.equal(permits([list([], ['10.0.0.0/8'])], 'not-an-address'), false);
});
