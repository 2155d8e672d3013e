import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { portsFlag } from '../helpers/net.js';
import { ROOT, startRelay } from '../helpers/processes.js';
import { Peer } from '../helpers/protocol.js';

/** The relay's descriptor limit here: small, so a few hundred connections exhaust it. */
const LIMIT = 200;

/** A HELLO on a new connection: the relay's first line, or '' when it closes without one. */
async function helloReply(port: number): Promise<{ socket: Socket; reply: string }> {
  const socket = connect({ port, host: '127.0.0.1' });
  socket.on('error', () => {});
  socket.write('HELLO 1 host=127.0.0.1\n');
  let text = '';
  const reply = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve(''), 3000);
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('\n')) {
        clearTimeout(timer);
        resolve(text.split('\n')[0]!);
      }
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(text.split('\n')[0] ?? '');
    });
  });
  return { socket, reply };
}

test('out of file descriptors: a service that cannot get a public port for want of a descriptor is told so, and it is logged and counted', async (t) => {
  const bin = await mkdtemp(path.join(tmpdir(), 'relay-fds-'));
  t.after(() => rm(bin, { recursive: true, force: true }));
  // The master and its worker both inherit the limit.
  await writeFile(path.join(bin, 'relay'), `#!/bin/sh\nulimit -n ${LIMIT}\nexec "${path.join(ROOT, 'relay')}" "$@"\n`);
  await chmod(path.join(bin, 'relay'), 0o755);
  const relay = await startRelay(t, [...portsFlag(), '--handshake-timeout', '60'], {}, bin);

  // Silent connections hold the relay's descriptors until it has none left (it then drops what arrives).
  const held = await Promise.all(Array.from({ length: LIMIT + 50 }, () => Peer.open(t, relay.port)));
  // Free one descriptor at a time: the first registration the relay can accept finds none for its public port.
  const replies: string[] = [];
  for (let i = 0; i < 20 && !replies.some((line) => line.startsWith('OK ')); i++) {
    // The oldest connections are the ones the relay accepted (it dropped the last ones).
    held.shift()?.socket.destroy();
    const { socket, reply } = await helloReply(relay.port);
    t.after(() => socket.destroy());
    if (reply !== '') replies.push(reply);
  }
  t.diagnostic(`replies: ${JSON.stringify(replies)}`);
  assert.ok(replies.includes('ERR limit out of file descriptors'), `a registration was told the relay is out of file descriptors: ${JSON.stringify(replies)}`);
  assert.ok(!replies.some((line) => line.includes('no free public port')), 'never misreported as no free public port');
  assert.ok(
    replies.some((line) => line.startsWith('OK ')),
    'registrations work again once descriptors are free',
  );
  assert.ok(
    relay.stderr.some((line) => line.includes('"reason":"fds"') && line.includes('out of file descriptors')),
    'logged with reason fds',
  );
});
