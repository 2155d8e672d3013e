import { test } from 'node:test';
import assert from 'node:assert/strict';
import { listenViaRelay, UsageError, type RelayClientOptions } from '../../src/index.js';
import { backoffPolicyOf, handshakeTimeoutOf, validateClientOptions } from '../../src/client/options.js';
import { CLIENT_DEFAULTS } from '../../src/config/defaults.js';

const usage = (pattern: RegExp) => (err: unknown) => err instanceof UsageError && err.code === 'usage' && pattern.test(err.message);

const badClientOptions: [Partial<RelayClientOptions>, RegExp][] = [
  [{ port: 0 }, /^port must be a whole number from 1 to 65535, got 0$/],
  [{ host: '' }, /^host must be/],
  [{ handshakeTimeoutMs: 3_000_000_000 }, /^handshakeTimeoutMs must be a number of milliseconds from 1 to 2147483647/],
  [{ handshakeTimeoutMs: 0 }, /^handshakeTimeoutMs must be/],
  [{ backoff: { maxMs: 1e12 } }, /^backoff.maxMs must be/],
  [{ backoff: { initialMs: -5 } }, /^backoff.initialMs must be/],
  [{ backoff: { jitter: 2 } }, /^backoff.jitter must be a fraction from 0 to 1/],
  [{ prewarm: -1 }, /^prewarm must be a whole number from 0 to 1000/],
  [{ prewarm: 'Auto' as 'auto' }, /^prewarm must be 'auto' or a whole number from 0 to 1000, got "Auto"/],
  [{ publicPort: 65536 }, /^publicPort must be a whole number from 1 to 65535/],
  [{ resumeKey: 'ABCDEF0123456789ABCDEF0123456789' }, /^resumeKey must be 32 hex digits$/],
  [{ tenant: 'no spaces' }, /^tenant must be 1-64 of A-Z a-z 0-9 _ \. -, got "no spaces"$/],
];

for (const [options, expected] of badClientOptions) {
  test(`library: listenViaRelay with ${JSON.stringify(options)} is refused with a UsageError naming the option`, () => {
    assert.throws(() => listenViaRelay(() => {}, { host: '127.0.0.1', port: 8080, ...options }), usage(expected));
  });
}

test('library: sound client options, at the edges of every range, are accepted', () => {
  const options: RelayClientOptions = {
    host: 'relay.example',
    port: 65535,
    publicPort: 1,
    prewarm: 1000,
    resumeKey: '0123456789abcdef0123456789abcdef',
    tenant: 'a'.repeat(64),
    handshakeTimeoutMs: 2_147_483_647,
    backoff: { initialMs: 1, maxMs: 2_147_483_647, jitter: 1 },
  };
  assert.doesNotThrow(() => validateClientOptions(options));
  assert.doesNotThrow(() => validateClientOptions({ host: 'relay.example', port: 1, prewarm: 'auto', backoff: { jitter: 0 } }));
});

test('library: timeouts and backoff left out take the documented defaults; those given are kept', () => {
  assert.equal(handshakeTimeoutOf({ host: 'h', port: 1 }), CLIENT_DEFAULTS.handshakeTimeoutMs);
  assert.equal(handshakeTimeoutOf({ host: 'h', port: 1, handshakeTimeoutMs: 50 }), 50);
  assert.deepEqual(backoffPolicyOf({ host: 'h', port: 1 }), { initialMs: 250, maxMs: 30_000, jitter: 0.3 });
  assert.deepEqual(backoffPolicyOf({ host: 'h', port: 1, backoff: { maxMs: 5000 } }), { initialMs: 250, maxMs: 5000, jitter: 0.3 });
});
