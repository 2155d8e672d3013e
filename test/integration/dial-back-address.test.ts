import { test } from 'node:test';
import assert from 'node:assert/strict';
import dns from 'node:dns';
import { createServer } from 'node:net';
import { dial, echoThrough } from '../helpers/net.js';
import { inProcessRelay, relayed } from '../helpers/relay.js';

// A relay given by name ("./echoserver localhost 8080", as the README starts it) used to
// be looked up again for every dial-back: getaddrinfo on libuv's thread pool on every
// client's path, and with a name of several addresses a dial-back could go to another
// machine than the one that sent CONNECT.
test('library: a relay named by a host name is looked up for the control connection, not for each dial-back', async (t) => {
  const relay = await inProcessRelay(t, { bind: '127.0.0.1' });
  const lookedUp: string[] = [];
  const original = dns.lookup;
  dns.lookup = ((hostname: string, ...rest: unknown[]) => {
    lookedUp.push(hostname);
    return (original as (...args: unknown[]) => unknown)(hostname, ...rest);
  }) as typeof dns.lookup;
  t.after(() => {
    dns.lookup = original;
  });
  const server = createServer((socket) => socket.pipe(socket));
  const { port } = await relayed(t, relay, server, { host: 'localhost' });
  assert.ok(lookedUp.includes('localhost'), 'the control connection looked the name up');

  const before = lookedUp.length;
  for (let i = 0; i < 10; i++) {
    const client = await dial(t, port);
    const line = Buffer.from(`client ${i}\n`);
    assert.deepEqual(await echoThrough(client, line), line);
    client.destroy();
  }
  assert.deepEqual(lookedUp.slice(before), [], 'no look-up for any of the 10 dial-backs');
});
