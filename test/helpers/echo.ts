import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { dial, readAtLeast } from './net.js';

/**
 * Writes text and asserts that exactly the same text comes back (from an echo service
 * through the relay), failing after ms instead of hanging. The socket stays open.
 */
export async function assertEchoes(socket: Socket, text: string, ms = 5000): Promise<void> {
  socket.write(text);
  assert.equal((await readAtLeast(socket, Buffer.byteLength(text), ms)).toString(), text);
}

/** A new client of the public port gets text echoed back within ms; it is closed after. */
export async function assertNewClientEchoes(t: TestContext, port: number, text: string, ms = 5000): Promise<void> {
  const client = await dial(t, port);
  await assertEchoes(client, text, ms);
  client.destroy();
}
