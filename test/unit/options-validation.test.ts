import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Relay, UsageError, type RelayOptions } from '../../src/index.js';
import { flagValue, MAX_TIMER_MS, RELAY_RULES } from '../../src/config/rules.js';

const usage = (pattern: RegExp) => (err: unknown) => err instanceof UsageError && err.code === 'usage' && pattern.test(err.message);

const badRelayOptions: [Partial<RelayOptions> & { port: number }, RegExp][] = [
  [{ port: 0 }, /^ports is required with port 0/],
  [{ port: 65535 }, /^ports is required with port 65535/],
  [{ port: 70000, ports: { first: 9000, last: 9001 } }, /^port must be a whole number from 0 to 65535, got 70000$/],
  [{ port: 8080, ports: { first: 9001, last: 9000 } }, /ports.first 9001 is above ports.last 9000/],
  [{ port: 8080, dialbackTimeoutMs: 3_000_000_000 }, /^dialbackTimeoutMs must be a number of milliseconds from 1 to 2147483647, got 3000000000$/],
  [{ port: 8080, handshakeTimeoutMs: MAX_TIMER_MS + 1 }, /^handshakeTimeoutMs must be/],
  [{ port: 8080, drainTimeoutMs: Number.POSITIVE_INFINITY }, /^drainTimeoutMs must be/],
  [{ port: 8080, resumeGraceMs: 30 * 86_400_000 }, /^resumeGraceMs must be/],
  [{ port: 8080, handshakeTimeoutMs: 0 }, /^handshakeTimeoutMs must be .* from 1 /],
  [{ port: 8080, heartbeatMs: 5 }, /^heartbeatMs must be .* from 10 to 3600000/],
  [{ port: 8080, maxServices: -1 }, /^maxServices must be a whole number from 1 up, got -1$/],
  [{ port: 8080, maxClientsPerService: 1.5 }, /^maxClientsPerService must be a whole number/],
  [{ port: 8080, maxPendingPerService: Number.NaN }, /^maxPendingPerService must be/],
  [{ port: 8080, secret: '' }, /^secret must not be empty/],
  [{ port: 8080, maxClientsPerIp: -1 }, /^maxClientsPerIp must be a whole number from 0 up, got -1$/],
  [{ port: 8080, maxConnectRate: 2.5 }, /^maxConnectRate must be a whole number from 0 to 1000000, got 2.5$/],
  [{ port: 8080, idleTimeoutMs: MAX_TIMER_MS + 1 }, /^idleTimeoutMs must be a number of milliseconds from 0 to 2147483647/],
  [{ port: 8080, tls: { cert: 'not a certificate', key: 'nor a key' } }, /^tls.cert and tls.key are not a usable PEM/],
];

for (const [options, expected] of badRelayOptions) {
  test(`library: new Relay(${JSON.stringify(options)}) is refused with a UsageError naming the option`, () => {
    assert.throws(() => new Relay(options), usage(expected));
  });
}

test('library: new Relay with sound options, and the longest timeouts a timer can hold, is accepted', () => {
  const relay = new Relay({ port: 8080, dialbackTimeoutMs: MAX_TIMER_MS, drainTimeoutMs: 0, resumeGraceMs: 0, maxWarmPerService: 0 });
  assert.equal(relay.options.dialbackTimeoutMs, MAX_TIMER_MS);
  assert.equal(new Relay({ port: 0, ports: { first: 9000, last: 9099 } }).options.port, 0);
});

test('flag values: seconds become ms within the timer limit; the error names the flag, its range and the value given', () => {
  assert.equal(flagValue(RELAY_RULES.dialbackTimeoutMs, '2.5'), 2500);
  assert.equal(flagValue(RELAY_RULES.dialbackTimeoutMs, 2147483), 2_147_483_000);
  assert.throws(() => flagValue(RELAY_RULES.dialbackTimeoutMs, '2147484'), usage(/^--dialback-timeout must be from 0.001 to 2147483 seconds, got "2147484"$/));
  assert.throws(() => flagValue(RELAY_RULES.drainTimeoutMs, ''), usage(/^--drain-timeout must be from 0 to 2147483 seconds, got ""$/));
  assert.throws(() => flagValue(RELAY_RULES.heartbeatMs, 'soon'), usage(/^--heartbeat must be from 0.01 to 3600 seconds/));
  assert.equal(flagValue(RELAY_RULES.maxServices, '12'), 12);
  assert.throws(() => flagValue(RELAY_RULES.maxServices, '0'), usage(/^--max-services must be a whole number from 1 up, got "0"$/));
  assert.equal(flagValue(RELAY_RULES.maxClientsPerIp, '0'), 0);
  assert.throws(() => flagValue(RELAY_RULES.maxClientsPerIp, 'many'), usage(/^--max-clients-per-ip must be a whole number from 0 up, got "many"$/));
  assert.throws(() => flagValue(RELAY_RULES.maxConnectRate, '2000000'), usage(/^--max-connect-rate must be a whole number from 0 to 1000000/));
  assert.equal(flagValue(RELAY_RULES.idleTimeoutMs, '300'), 300_000);
  assert.throws(() => flagValue(RELAY_RULES.idleTimeoutMs, '2147484'), usage(/^--idle-timeout must be from 0 to 2147483 seconds/));
});
