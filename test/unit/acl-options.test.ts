import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTenants } from '../../src/access/tenants-file.js';
import { cidrListArg } from '../../src/cli/common.js';
import { helloFor, unhonouredLists, type Registered } from '../../src/client/handshake.js';
import { validateClientOptions } from '../../src/client/options.js';
import { formatCidr } from '../../src/protocol/cidr.js';
import { formatMessage } from '../../src/protocol/format.js';
import { MAX_LINE_BYTES, type Feature } from '../../src/protocol/messages.js';
import { parseServiceLine } from '../../src/protocol/parse.js';

const RESUME = '0123456789abcdef0123456789abcdef';

test('HELLO allow= and deny=: parsed, written back canonically, and read again unchanged', () => {
  const parsed = parseServiceLine('HELLO 1 host=r.example feat=acl allow=10.0.0.0/8,2001:DB8::/32 deny=10.0.0.7');
  assert.ok(parsed.ok && parsed.msg.kind === 'HELLO');
  assert.deepEqual(parsed.msg.allow?.map(formatCidr), ['10.0.0.0/8', '2001:db8::/32']);
  assert.deepEqual(parsed.msg.deny?.map(formatCidr), ['10.0.0.7/32']);
  const line = formatMessage(parsed.msg);
  assert.equal(line, 'HELLO 1 host=r.example feat=acl allow=10.0.0.0/8,2001:db8::/32 deny=10.0.0.7/32\n');
  assert.deepEqual(parseServiceLine(line.trimEnd()), parsed);
});

test('HELLO allow=: a bad range makes a bad line whose reason quotes it', () => {
  const parsed = parseServiceLine('HELLO 1 allow=10.0.0.0/8,10.0.0.1/8');
  assert.equal(parsed.ok, false);
  assert.equal(!parsed.ok && parsed.code, 'bad-line');
  assert.equal(!parsed.ok && parsed.reason, 'allow= must be comma-separated CIDR ranges: "10.0.0.1/8" has bits set past its /8 (the range starts at 10.0.0.0/8)');
  const empty = parseServiceLine('HELLO 1 deny=');
  assert.match(!empty.ok ? empty.reason : '', /^deny= must be comma-separated CIDR ranges: an empty range/);
});

test('HELLO of a service without lists is unchanged: no acl, no allow=', () => {
  assert.equal(formatMessage(helloFor({ host: 'r.example', port: 1, prewarm: 0 }, undefined, RESUME)), `HELLO 1 host=r.example resume=${RESUME} feat=rejoin,leave,superseded,probe,fleet,nodes,name\n`);
});

test('HELLO of a service with lists lists acl and sends them', () => {
  const hello = helloFor({ host: 'r.example', port: 1, prewarm: 0, allow: ['192.0.2.0/24'], deny: ['192.0.2.7'] }, undefined, undefined);
  assert.equal(formatMessage(hello), 'HELLO 1 host=r.example feat=rejoin,leave,superseded,probe,fleet,nodes,name,acl allow=192.0.2.0/24 deny=192.0.2.7/32\n');
});

test('an OK without acl, to a HELLO with lists, is a refusal for good (code acl); with acl, or without lists, it is not', () => {
  const ok = (features?: Feature[]): Registered => ({ kind: 'OK', host: 'r', port: 9, dataPort: 8, heartbeatMs: 5000, resume: RESUME, ...(features === undefined ? {} : { features }) });
  const withLists = helloFor({ host: 'r', port: 1, allow: ['10.0.0.0/8'] }, undefined, undefined);
  const err = unhonouredLists(withLists, ok());
  assert.equal(err?.code, 'acl');
  assert.match(err?.message ?? '', /does not support --allow\/--deny/);
  assert.equal(unhonouredLists(withLists, ok(['leave']))?.code, 'acl');
  assert.equal(unhonouredLists(withLists, ok(['acl'])), undefined);
  assert.equal(unhonouredLists(helloFor({ host: 'r', port: 1 }, undefined, undefined), ok()), undefined);
});

test('library options allow/deny: bad ranges and lists too long for a HELLO are refused before connecting', () => {
  const refused = (options: object, says: RegExp): void =>
    assert.throws(
      () => validateClientOptions({ host: 'r', port: 1, ...options }),
      (err: Error) => err.name === 'UsageError' && says.test(err.message),
    );
  refused({ allow: ['10.0.0.1/8'] }, /^allow: "10\.0\.0\.1\/8" has bits set/);
  refused({ deny: '10.0.0.0/8' }, /deny must be a list of CIDR strings/);
  refused({ allow: Array.from({ length: 40 }, (_, i) => `10.0.${i}.0/24`) }, /fit in 400 characters/);
  validateClientOptions({ host: 'r', port: 1, allow: ['10.0.0.0/8', '::1'], deny: ['10.9.0.0/16'] });
});

test('tenants file allow/deny: lists of ranges (or one comma-separated string); bad ones named with their tenant', () => {
  const range = { first: 20000, last: 20999 };
  const [tenant, other] = parseTenants(
    JSON.stringify({
      tenants: [
        { name: 'alice', secrets: ['a'], allow: ['10.0.0.0/8', '::1'], deny: '10.0.0.7' },
        { name: 'bob', secrets: ['b'] },
      ],
    }),
    range,
  );
  assert.deepEqual(tenant?.access?.allow.map(formatCidr), ['10.0.0.0/8', '::1/128']);
  assert.deepEqual(tenant?.access?.deny.map(formatCidr), ['10.0.0.7/32']);
  assert.equal(other?.access, undefined);
  const refused = (entry: object, says: RegExp): void =>
    assert.throws(
      () => parseTenants(JSON.stringify({ tenants: [{ name: 'alice', secrets: ['a'], ...entry }] }), range),
      (err: Error) => err.name === 'UsageError' && says.test(err.message),
    );
  refused({ allow: ['10.0.0.1/8'] }, /^tenant "alice": "allow": "10\.0\.0\.1\/8" has bits set/);
  refused({ deny: [] }, /tenant "alice": "deny" must be a list of up to 64 CIDR ranges/);
  refused({ deny: [7] }, /"deny" must be a list/);
});

test('HELLO with the longest lists the library takes and every other option at its longest fits in one line', () => {
  const allow: string[] = [];
  for (let i = 0; allow.join(',').length < 360; i++) allow.push(`2001:db8:${i.toString(16)}::/48`);
  const options = { host: 'h'.repeat(253), port: 1, publicPort: 65535, prewarm: 1000, tenant: 't'.repeat(64), allow, deny: ['255.255.255.255'] };
  validateClientOptions(options);
  const line = formatMessage(helloFor(options, undefined, RESUME));
  assert.ok(line.length <= MAX_LINE_BYTES, `${line.length} bytes`);
  assert.ok(parseServiceLine(line.trimEnd()).ok);
});

test('--allow and friends: a comma-separated flag or a --config list, written back canonically; anything else names the flag', () => {
  assert.deepEqual(cidrListArg('--allow', '10.0.0.0/8, 2001:DB8::/32'), ['10.0.0.0/8', '2001:db8::/32']);
  assert.deepEqual(cidrListArg('--deny', ['192.0.2.7', '::1']), ['192.0.2.7/32', '::1/128']);
  assert.throws(() => cidrListArg('--public-proxy-from', 7), /^UsageError: --public-proxy-from must be CIDR/);
  assert.throws(() => cidrListArg('--allow', '10.0.0.0/8,'), /--allow must be CIDR.*an empty range/);
});
