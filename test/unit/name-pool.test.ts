import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NamePool } from '../../src/leases/name-pool.js';

const KEY = '0123456789abcdef0123456789abcdef';
const OTHER_KEY = 'fedcba9876543210fedcba9876543210';

test('a host being claimed is held against other keys but is no lease until settled; a live one stays a lease while its key claims it again', () => {
  const pool = new NamePool();
  assert.equal(pool.take('app.example.test', KEY, undefined), true);
  assert.deepEqual(pool.snapshot(), [], 'no lease while the fleet is asked');
  assert.equal(pool.take('app.example.test', OTHER_KEY, undefined), false, 'held meanwhile');
  pool.settle('app.example.test');
  assert.deepEqual(pool.snapshot(), [{ key: KEY, name: 'app.example.test', until: null }]);
  assert.equal(pool.take('app.example.test', KEY, undefined), true, 'its key registers again');
  assert.deepEqual(pool.snapshot(), [{ key: KEY, name: 'app.example.test', until: null }], 'and keeps its lease meanwhile');
});
