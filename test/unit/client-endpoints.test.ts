import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dataEndpointFor } from '../../src/client/data-path.js';
import { refusalReason } from '../../src/client/dial-back.js';
import { endpointTls, TlsSessions } from '../../src/client/transport.js';

test('dial-backs from a relay named by a host name go to the address the control connection reached', () => {
  assert.deepEqual(dataEndpointFor('relay.example', '192.0.2.7', 7001, undefined), { host: 'relay.example', address: '192.0.2.7', port: 7001, tls: undefined });
});

test('dial-backs to a relay named by its address, or before the address is known, go to that host', () => {
  assert.deepEqual(dataEndpointFor('192.0.2.7', '192.0.2.7', 7001, undefined), { host: '192.0.2.7', port: 7001, tls: undefined });
  assert.deepEqual(dataEndpointFor('::1', '::1', 7001, undefined), { host: '::1', port: 7001, tls: undefined });
  assert.deepEqual(dataEndpointFor('relay.example', undefined, 7001, undefined), { host: 'relay.example', port: 7001, tls: undefined });
});

test('tls option: off is plain TCP; on, or with a CA, shares the registration session cache', () => {
  const sessions = new TlsSessions();
  assert.equal(endpointTls(undefined, sessions), undefined);
  assert.equal(endpointTls(false, sessions), undefined);
  const on = endpointTls(true, sessions);
  assert.deepEqual(on, { sessions });
  assert.equal(on?.sessions, sessions);
  const withCa = endpointTls({ ca: 'PEM', servername: 'relay.example' }, sessions);
  assert.deepEqual(withCa, { ca: 'PEM', servername: 'relay.example', sessions });
  assert.equal(withCa?.sessions, sessions);
});

test("a refused data connection is logged with the relay's code and text, or what came instead", () => {
  assert.equal(refusalReason({ ok: true, msg: { kind: 'ERR', code: 'bad-token', text: 'unknown token' }, rest: Buffer.alloc(0), line: 'ERR bad-token unknown token' }), 'bad-token: unknown token');
  assert.equal(refusalReason({ ok: true, msg: { kind: 'PING' }, rest: Buffer.alloc(0), line: 'PING' }), 'unexpected PING');
  assert.equal(refusalReason({ ok: false, code: 'closed', reason: 'closed before a line' }), 'closed before a line');
});
