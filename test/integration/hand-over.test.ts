import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { sendSocket } from '../../src/net/hand-over.js';
import { deadline, eventually, listenLocal } from '../helpers/net.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), '../helpers/hand-over-child.js');

test('a socket handed to another process through a go-between loses no byte, in either direction, and keeps half-close', async (t) => {
  const child = fork(CHILD, ['pass']);
  t.after(() => child.kill());
  await once(child, 'message', { signal: deadline(10_000) });

  const accepted: Socket[] = [];
  const { server, port } = await listenLocal(t, (socket) => accepted.push(socket));
  const client = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  t.after(() => client.destroy());
  await once(client, 'connect', { signal: deadline(5000) });
  const echoed: Buffer[] = [];
  client.on('data', (chunk: Buffer) => echoed.push(chunk));

  // The client writes all along, so bytes are in flight at every step of the hand-over.
  const sent: Buffer[] = [];
  let n = 0;
  const writer = setInterval(() => {
    const line = Buffer.from(`line ${n++} ${'x'.repeat(n % 200)}\n`);
    sent.push(line);
    client.write(line);
  }, 2);
  t.after(() => clearInterval(writer));

  // This process reads some of it first: those bytes must travel with the socket.
  await eventually(() => accepted.length > 0, 5000, 'the connection to be accepted');
  const socket = accepted[0]!;
  socket.pause();
  await eventually(() => socket.readableLength > 0, 5000, 'bytes buffered in the first process');
  const closed = once(server, 'close', { signal: deadline(5000) });
  sendSocket(socket, (head, handle, sent) => {
    assert.ok(head.length > 0, 'the first process had read bytes');
    child.send({ head: head.toString('base64') }, handle, sent);
  });
  // The socket left this process: closing the server must not wait for it.
  server.close();
  await closed;

  // Keep writing until the far process echoes bytes written after the hand-over.
  const total = (chunks: Buffer[]): number => chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const target = total(sent) + 1000;
  await eventually(() => total(echoed) >= target, 10_000, 'the echo of bytes sent after the hand-over');
  clearInterval(writer);
  const ended = once(client, 'end', { signal: deadline(10_000) });
  client.end();
  await ended;
  assert.equal(Buffer.concat(echoed).toString(), Buffer.concat(sent).toString());
});

test('ten sockets handed over in one go all reach the far process through the go-between, whether or not they sent bytes first', async (t) => {
  const child = fork(CHILD, ['pass']);
  t.after(() => child.kill());
  await once(child, 'message', { signal: deadline(10_000) });

  const accepted: Socket[] = [];
  const { port } = await listenLocal(t, (socket) => accepted.push(socket));
  const clients = await Promise.all(
    Array.from({ length: 10 }, async (_, i) => {
      const client = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      client.on('error', () => {});
      t.after(() => client.destroy());
      await once(client, 'connect', { signal: deadline(5000) });
      if (i % 2 === 0) client.write(`before ${i}\n`);
      return client;
    }),
  );
  await eventually(() => accepted.length === 10, 5000, 'the ten connections to be accepted');
  // Node sends one handle at a time: all but the first wait for the last one's acknowledgement.
  for (const socket of accepted) sendSocket(socket, (head, handle, sent) => child.send({ head: head.toString('base64') }, handle, sent));

  await Promise.all(
    clients.map(async (client, i) => {
      const expected = `${i % 2 === 0 ? `before ${i}\n` : ''}after ${i}\n`;
      const echoed: Buffer[] = [];
      client.on('data', (chunk: Buffer) => echoed.push(chunk));
      const ended = once(client, 'end', { signal: deadline(10_000) });
      client.end(`after ${i}\n`);
      await ended;
      assert.equal(Buffer.concat(echoed).toString(), expected, `socket ${i} was echoed in full`);
    }),
  );
});
