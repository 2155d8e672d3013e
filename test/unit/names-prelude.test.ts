import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { hostCandidates, hostOfName, isServiceName, nameAllowed, splitPublicAddress } from '../../src/protocol/names.js';
import { MAX_PRELUDE_BYTES, readPrelude } from '../../src/protocol/prelude.js';
import { parseServiceLine } from '../../src/protocol/parse.js';
import { formatMessage } from '../../src/protocol/format.js';
import type { ServiceMessage } from '../../src/protocol/messages.js';

/** The first bytes a real Node TLS client sends (its ClientHello), with or without SNI. */
async function clientHello(servername: string | undefined): Promise<Buffer> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const got = new Promise<Buffer>((resolve) => server.once('connection', (socket) => socket.once('data', (chunk: Buffer) => (resolve(chunk), socket.destroy()))));
  const client = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', ...(servername === undefined ? {} : { servername }), rejectUnauthorized: false });
  client.on('error', () => {});
  const hello = await got;
  client.destroy();
  server.close();
  return hello;
}

/** The same handshake re-framed into TLS records of at most `size` bytes each. */
function reframe(hello: Buffer, size: number): Buffer {
  const body = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const records: Buffer[] = [];
  for (let at = 0; at < body.length; at += size) {
    const part = body.subarray(at, at + size);
    records.push(Buffer.from([0x16, 0x03, 0x01, part.length >> 8, part.length & 0xff]), part);
  }
  return Buffer.concat(records);
}

test('prelude: a ClientHello names its SNI, whole, split byte by byte, and over many TLS records', async () => {
  const hello = await clientHello('Shop.Example.com');
  assert.deepEqual(readPrelude(hello), { kind: 'tls', host: 'Shop.Example.com' });
  for (let end = 0; end < hello.length; end++) assert.deepEqual(readPrelude(hello.subarray(0, end)), { kind: 'more' }, `at ${end} bytes`);
  for (const size of [1, 7, 100]) assert.deepEqual(readPrelude(reframe(hello, size)), { kind: 'tls', host: 'Shop.Example.com' }, `records of ${size}`);
});

test('prelude: a ClientHello without SNI names no host; other TLS records first, or a broken ClientHello, are bad', async () => {
  assert.deepEqual(readPrelude(await clientHello(undefined)), { kind: 'tls', host: undefined });
  const hello = await clientHello('a.example.com');
  const alertFirst = Buffer.concat([Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]), hello]);
  assert.equal(readPrelude(alertFirst).kind, 'bad');
  const broken = Buffer.from(hello);
  broken.writeUInt16BE(0xffff, 5 + 4 + 2 + 32 + 1 + broken[5 + 4 + 2 + 32]!); // cipher suites longer than the message
  assert.equal(readPrelude(broken).kind, 'bad');
  assert.equal(readPrelude(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0])).kind, 'bad'); // a ServerHello
});

test('prelude: an HTTP/1.x request names its Host (any case, port stripped) once that line is in, whatever comes before', () => {
  const request = 'GET /x HTTP/1.1\r\nUser-Agent: t\r\nhOsT:  WWW.Example.com:8443 \r\n\r\n';
  const full = readPrelude(Buffer.from(request));
  assert.deepEqual(full, { kind: 'http', host: 'WWW.Example.com' });
  const hostEnd = request.indexOf('8443 \r\n') + 7;
  for (let end = 0; end < hostEnd; end++) assert.deepEqual(readPrelude(Buffer.from(request.slice(0, end))), { kind: 'more' }, `at ${end}`);
  assert.deepEqual(readPrelude(Buffer.from('GET / HTTP/1.0\n\n')), { kind: 'http', host: undefined });
  assert.deepEqual(readPrelude(Buffer.from('GET / HTTP/1.1\r\nHost: [::1]:80\r\n')), { kind: 'http', host: '[::1]' });
  for (const bad of ['SSH-2.0-OpenSSH\r\n', 'get / HTTP/1.1\r\n', 'GET / HTTP/2\r\n', 'GET /\x00', '\x00\x01']) assert.equal(readPrelude(Buffer.from(bad, 'latin1')).kind, 'bad', JSON.stringify(bad));
  // A request line that never ends is the caller's to cap.
  assert.deepEqual(readPrelude(Buffer.from(`GET /${'a'.repeat(MAX_PRELUDE_BYTES)}`)), { kind: 'more' });
});

test('names: what a service may ask for, the host it makes, and which hosts a client name reaches, best first', () => {
  for (const name of ['www', 'api.eu', '*', '*.eu', 'a-1.b2', 'x'.repeat(63)]) assert.ok(isServiceName(name), name);
  for (const name of ['', 'WWW', 'a..b', '.a', 'a.', '*.', 'a.*', '**', 'a_b', 'x'.repeat(64), `${'a.'.repeat(100)}a`]) assert.ok(!isServiceName(name), name);
  assert.equal(hostOfName('*.eu', 'Relay.Example.com.'), '*.eu.relay.example.com');
  assert.deepEqual(hostCandidates('a.b.example.com'), ['a.b.example.com', '*.b.example.com', '*.example.com', '*.com']);
  assert.ok(nameAllowed('www.alice', '*.alice') && nameAllowed('*.alice', '*.alice') && nameAllowed('a.b.alice', '*.alice'));
  assert.ok(!nameAllowed('alice', '*.alice') && !nameAllowed('www.malice', '*.alice') && !nameAllowed('www', 'ww'));
  assert.ok(nameAllowed('anything.at.all', '*'));
  assert.deepEqual(splitPublicAddress('*.eu.example.com:443'), { host: '*.eu.example.com', port: 443 });
  assert.equal(splitPublicAddress('*.[::1]:443'), undefined);
});

test('HELLO name=: round trip, and a malformed name is a bad line naming the rule', () => {
  const hello: ServiceMessage = { kind: 'HELLO', version: 1, features: ['name'], name: '*.eu' };
  assert.deepEqual(parseServiceLine(formatMessage(hello).trimEnd()), { ok: true, msg: hello });
  const bad = parseServiceLine('HELLO 1 name=Www');
  assert.equal(bad.ok, false);
  assert.match(bad.ok ? '' : bad.reason, /^name= must be DNS labels/);
});
