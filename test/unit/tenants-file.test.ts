import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTenants } from '../../src/access/tenants-file.js';

const RANGE = { first: 20000, last: 20999 };
const file = (tenants: unknown[]): string => JSON.stringify({ tenants });
const refused = (text: string, message: RegExp): void => {
  assert.throws(
    () => parseTenants(text, RANGE),
    (err: Error) => err.name === 'UsageError' && message.test(err.message) && !err.message.includes('\n'),
  );
};

test('tenants file: names, secrets, ranges, lists and limits are read', () => {
  const tenants = parseTenants(
    file([
      { name: 'alice', secrets: ['a1', 'a2'], ports: '20000-20099', maxServices: 5, maxClients: 2000, maxClientsPerIp: 50 },
      { name: 'bob.example_2-x', secrets: ['b'], ports: '20100, 20105-20110' },
      { name: 'carol', secrets: ['c'], ports: 20200 },
      { name: 'dave', secrets: ['d'] },
    ]),
    RANGE,
  );
  assert.deepEqual(tenants[0], {
    name: 'alice',
    secrets: ['a1', 'a2'],
    ports: [{ first: 20000, last: 20099 }],
    limits: { maxServices: 5, maxClients: 2000, maxClientsPerIp: 50 },
  });
  assert.deepEqual(tenants[1]?.ports, [
    { first: 20100, last: 20100 },
    { first: 20105, last: 20110 },
  ]);
  assert.deepEqual(tenants[2]?.ports, [{ first: 20200, last: 20200 }]);
  assert.deepEqual(tenants[3]?.ports, [RANGE], 'no ports: the relay range');
  assert.deepEqual(tenants[3]?.limits, {});
  assert.deepEqual(parseTenants('{"tenants":[]}', RANGE), [], 'an empty list is allowed (nobody may register)');
});

test('tenants file: every mistake is one line naming it', () => {
  refused('{"tenants":[', /^not valid JSON( \(at character \d+\))?$/);
  refused('{"tenants":[}', /^not valid JSON( \(at character \d+\))?$/);
  refused('[]', /must be a JSON object/);
  refused('{"tenants":[],"extra":1}', /unknown key "extra"/);
  refused('{"tenants":{}}', /"tenants" must be a list/);
  refused(file(['alice']), /tenant #1 must be an object/);
  refused(file([{ name: 'al ice', secrets: ['s'] }]), /tenant #1: "name" must be 1-64/);
  refused(file([{ name: 'x'.repeat(65), secrets: ['s'] }]), /"name" must be 1-64/);
  refused(file([{ name: 'alice', secrets: ['s'], maxServicez: 1 }]), /tenant "alice": unknown key "maxServicez"/);
  refused(
    file([
      { name: 'alice', secrets: ['s'] },
      { name: 'alice', secrets: ['t'] },
    ]),
    /tenant "alice" is listed twice/,
  );
  refused(file([{ name: 'alice', secrets: [] }]), /"secrets" must be a list of 1 to 16/);
  refused(file([{ name: 'alice', secret: 's' }]), /unknown key "secret"/);
  refused(file([{ name: 'alice', secrets: [''] }]), /secret #1 must be a non-empty string/);
  refused(file([{ name: 'alice', secrets: ['s'], ports: '19999-20010' }]), /ports 19999-20010 lie outside the relay's public ports 20000-20999/);
  refused(file([{ name: 'alice', secrets: ['s'], ports: '20000,21000' }]), /ports 21000 lie outside/);
  refused(file([{ name: 'alice', secrets: ['s'], ports: '20010-20000' }]), /run backwards/);
  refused(file([{ name: 'alice', secrets: ['s'], ports: 'many' }]), /"ports" must be a port, a range A-B or a list/);
  refused(file([{ name: 'alice', secrets: ['s'], maxClients: 0 }]), /"maxClients" must be a whole number from 1 up/);
  refused(file([{ name: 'alice', secrets: ['s'], maxClientsPerIp: 1.5 }]), /"maxClientsPerIp" must be a whole number/);
});

test('tenants file: a refusal never quotes a secret', () => {
  const secret = 'hunter2-very-secret';
  for (const text of [`{"tenants":[{"name":"a","secrets":["${secret}"] x}]}`, `{"tenants":[{"name":"a","secrets":["${secret}", 7]}]}`]) {
    assert.throws(
      () => parseTenants(text, RANGE),
      (err: Error) => !err.message.includes(secret),
    );
  }
});
