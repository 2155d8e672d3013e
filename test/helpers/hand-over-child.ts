/**
 * A child process for the hand-over test. `echo`: adopts each socket it is sent and
 * echoes it, half-close included. `pass`: forwards each socket to its own `echo` child
 * without reading it, as the relay's master does.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import { adoptHandedOver, passSocketOn } from '../../src/net/hand-over.js';

const mode = process.argv[2];
const next = mode === 'pass' ? fork(fileURLToPath(import.meta.url), ['echo']) : undefined;

process.on('message', (msg: { head: string }, socket: unknown) => {
  const client = socket as Socket;
  if (next !== undefined) {
    passSocketOn(client, (handle, sent) => next.send(msg, handle, sent));
    return;
  }
  adoptHandedOver(client, Buffer.from(msg.head, 'base64'));
  client.on('data', (chunk: Buffer) => client.write(chunk));
  client.on('end', () => client.end());
  client.resume();
});
process.on('disconnect', () => {
  next?.kill();
  process.exit(0);
});
process.send?.('ready');
