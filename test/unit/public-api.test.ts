import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RelayRegistration, RelayTunnel } from '../../src/index.js';

test('public API: RelayTunnel is still exported, as the deprecated name of RelayRegistration', () => {
  assert.equal(RelayTunnel, RelayRegistration);
});
