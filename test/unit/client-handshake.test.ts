import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RegistrationRefusedError } from '../../src/errors.js';
import { helloFor, publicAddressOf, refusalError } from '../../src/client/handshake.js';
import { formatMessage } from '../../src/protocol/format.js';
import type { RelayMessage } from '../../src/protocol/messages.js';
import { parseRelayLine } from '../../src/protocol/parse.js';

const KEY = '0123456789abcdef0123456789abcdef';
const FEAT = 'feat=rejoin,leave,superseded,probe,fleet,nodes,name';

test('HELLO: a first registration names the relay host, the default prewarm pool (auto: its most) and every feature the library understands', () => {
  assert.equal(formatMessage(helloFor({ host: 'relay.example', port: 7000 }, undefined, undefined)), `HELLO 1 host=relay.example warm=64 ${FEAT}\n`);
});

test('HELLO: asks for publicPort, a resume key, a warm pool and a tenant when given', () => {
  const hello = helloFor({ host: '127.0.0.1', port: 7000, publicPort: 9000, prewarm: 3, tenant: 'acme' }, undefined, KEY);
  assert.equal(formatMessage(hello), `HELLO 1 host=127.0.0.1 port=9000 resume=${KEY} warm=3 ${FEAT} tenant=acme\n`);
});

test('HELLO: after a registration, asks for the port it had, whatever publicPort said', () => {
  const hello = helloFor({ host: '127.0.0.1', port: 7000, publicPort: 9000 }, 9123, KEY);
  assert.equal(hello.port, 9123);
});

test("HELLO: prewarm 'auto' (the default) announces the most it may park; prewarm 0 announces nothing", () => {
  assert.equal(helloFor({ host: 'h', port: 1, prewarm: 'auto' }, undefined, undefined).warm, 64);
  assert.equal(helloFor({ host: 'h', port: 1 }, undefined, undefined).warm, 64);
  assert.equal('warm' in helloFor({ host: 'h', port: 1, prewarm: 0 }, undefined, undefined), false);
});

const err = (code: string, text: string): RelayMessage & { kind: 'ERR' } => {
  const parsed = parseRelayLine(`ERR ${code} ${text}`);
  assert.ok(parsed.ok && parsed.msg.kind === 'ERR', `ERR ${code} parses`);
  return parsed.msg as RelayMessage & { kind: 'ERR' };
};

test('refusals for good: auth, version and superseded stop the library, each with a message a user can act on', () => {
  const cases: [RelayMessage & { kind: 'ERR' }, string, string][] = [
    [err('auth', 'authentication failed: bad proof'), 'auth', 'authentication failed: bad proof'],
    [err('auth', 'no such tenant'), 'auth', 'authentication failed: no such tenant'],
    [err('version', 'relay speaks 2'), 'version', 'protocol version mismatch: relay speaks 2'],
    [err('superseded', 'bye'), 'superseded', 'superseded: another process registered with the same resume key'],
  ];
  for (const [msg, code, message] of cases) {
    const refusal = refusalError(msg);
    assert.ok(refusal instanceof RegistrationRefusedError, `${msg.code} is for good`);
    assert.equal(refusal.code, code);
    assert.equal(refusal.message, message);
  }
});

test('refusals a later attempt may get past (a full relay, a bad line) are not for good', () => {
  assert.equal(refusalError(err('limit', 'too many services')), undefined);
  assert.equal(refusalError(err('bad-line', 'what?')), undefined);
});

test('the public address of an OK is written as people type it, IPv6 in brackets', () => {
  const ok = (host: string): RelayMessage & { kind: 'OK' } => ({ kind: 'OK', host, port: 9000, dataPort: 7001, heartbeatMs: 1000, resume: KEY });
  assert.deepEqual(publicAddressOf(ok('relay.example')), { host: 'relay.example', port: 9000, address: 'relay.example:9000' });
  assert.equal(publicAddressOf(ok('::1')).address, '[::1]:9000');
});
