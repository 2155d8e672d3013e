import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../src/log.js';
import { computeProof, newNonce } from '../../src/protocol/auth.js';
import { PortPool } from '../../src/leases/port-pool.js';
import { Tenancy } from '../../src/access/tenancy.js';
import { ManualClock } from '../helpers/clock.js';

const RANGE = { first: 5000, last: 5009 };

function tenantsFile(t: TestContext, tenants: unknown[]): { file: string; write: (content: unknown[] | string) => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-tenancy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'tenants.json');
  const write = (content: unknown[] | string): void => writeFileSync(file, typeof content === 'string' ? content : JSON.stringify({ tenants: content }));
  write(tenants);
  return { file, write };
}

const proofFor = (secret: string): { nonce: string; mac: string } => {
  const nonce = newNonce();
  return { nonce, mac: computeProof(secret, nonce) };
};

test('a proof is granted only for the tenant it names, with any of its secrets', (t) => {
  const { file } = tenantsFile(t, [
    { name: 'alice', secrets: ['a1', 'a2'] },
    { name: 'bob', secrets: ['b'] },
  ]);
  const tenancy = new Tenancy(file, RANGE, silentLogger);
  for (const secret of ['a1', 'a2']) {
    const { nonce, mac } = proofFor(secret);
    assert.equal(tenancy.verify('alice', nonce, mac)?.account.name, 'alice');
  }
  const { nonce, mac } = proofFor('b');
  assert.equal(tenancy.verify('alice', nonce, mac), undefined, "bob's secret is not alice's");
  assert.equal(tenancy.verify('carol', nonce, mac), undefined);
  assert.equal(tenancy.verify(undefined, nonce, mac), undefined);
});

test('a reload revokes removed tenants and removed secrets; a file that does not load keeps the old tenants', (t) => {
  const { file, write } = tenantsFile(t, [
    { name: 'alice', secrets: ['old'] },
    { name: 'bob', secrets: ['b'] },
  ]);
  const tenancy = new Tenancy(file, RANGE, silentLogger);
  const grant = (tenant: string, secret: string): object => {
    const { nonce, mac } = proofFor(secret);
    const owner = {};
    tenancy.bind(owner, tenancy.verify(tenant, nonce, mac)!);
    return owner;
  };
  const aliceOld = grant('alice', 'old');
  const bob = grant('bob', 'b');
  write([
    { name: 'alice', secrets: ['old', 'new'] },
    { name: 'bob', secrets: ['b'] },
  ]);
  assert.deepEqual(tenancy.reload(), []);
  const aliceNew = grant('alice', 'new');
  assert.equal(tenancy.revoked(aliceOld), false, 'adding a secret revokes nothing');
  write('{ not json');
  assert.equal(tenancy.reload(), undefined);
  assert.equal(tenancy.has('bob'), true, 'the old tenants stay');
  write([{ name: 'alice', secrets: ['new'] }]);
  assert.deepEqual(tenancy.reload(), ['bob']);
  assert.equal(tenancy.revoked(aliceOld), true);
  assert.equal(tenancy.revoked(aliceNew), false);
  assert.equal(tenancy.revoked(bob), true);
  assert.equal(tenancy.revoked({}), false, 'an owner without a grant is not a tenant');
});

test('a tenant at maxServices makes room only by ending its own oldest reservation', async (t) => {
  const { file } = tenantsFile(t, [
    { name: 'alice', secrets: ['a'], maxServices: 2 },
    { name: 'bob', secrets: ['b'] },
  ]);
  const tenancy = new Tenancy(file, RANGE, silentLogger);
  const clock = new ManualClock();
  const pool = new PortPool(RANGE, clock);
  const listen = async (): Promise<boolean> => true;
  const { nonce, mac } = proofFor('a');
  const alice = tenancy.verify('alice', nonce, mac)!.account;
  const keys = ['1', '2', '3', '4'].map((c) => c.repeat(32));
  for (const key of keys.slice(0, 2)) assert.ok(await pool.acquire(listen, undefined, key, alice.scope));
  const bobPort = await pool.acquire(listen, undefined, keys[3], { tenant: 'bob', ports: [RANGE] });
  pool.release(5000, keys[0], 60_000);
  pool.release(bobPort!, keys[3], 60_000);
  alice.services = 1;
  assert.equal(tenancy.admitService(alice, pool, keys[2]!, false), true, "alice's reservation is ended for her newcomer");
  assert.equal(pool.reservationsOf('alice'), 0);
  assert.equal(pool.reservationsOf('bob'), 1, "bob's is untouched");
  alice.services = 2;
  assert.equal(tenancy.admitService(alice, pool, keys[2]!, false), false, 'at the quota with nothing of her own to end');
  assert.equal(tenancy.admitService(alice, pool, keys[2]!, true), true, 'taking over her own registration adds nothing');
  assert.deepEqual(tenancy.figures(pool).find((f) => f.name === 'alice')?.refusals, new Map([['services', 1]]));
});
