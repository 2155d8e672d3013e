import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { takeWaitingBytes, type WaitingBytes } from '../../src/net/waiting-bytes.js';
import { deadline, eventually, howItEnds, readToEnd, socketPair } from '../helpers/net.js';

const written = (socket: Socket, data: string): Promise<void> => new Promise((resolve, reject) => socket.write(data, (err) => (err ? reject(err) : resolve())));

test('waiting bytes: nothing sent yet reads as no bytes, at once', async (t) => {
  const { near } = await socketPair(t);
  const got = takeWaitingBytes(near);
  assert.ok(Buffer.isBuffer(got) && got.length === 0);
});

test('waiting bytes: what the peer sent is taken without the stream, and the stream goes on after it, FIN included', async (t) => {
  const { near, far } = await socketPair(t);
  await written(far, 'first ');
  let got: WaitingBytes = Buffer.alloc(0);
  // Loopback has delivered it when the write is done; polled only to be safe on a loaded machine.
  await eventually(() => (got = takeWaitingBytes(near)) !== 'reset' && got.length > 0, 5000, 'the first bytes waiting');
  assert.equal(got.toString(), 'first ');
  far.end('rest');
  near.resume();
  assert.equal((await readToEnd(near)).toString(), 'rest', 'the stream reads what came after, then its FIN');
});

test('waiting bytes: a peer that reset is reported, for the caller to pass on (a later read would see only EOF)', async (t) => {
  const { near, far } = await socketPair(t);
  far.resetAndDestroy();
  await once(far, 'close', { signal: deadline(5000) });
  await eventually(() => takeWaitingBytes(near) === 'reset', 5000, 'the reset reported');
  near.resume();
  assert.notEqual(await howItEnds(near), 'reset', 'reported once only: the caller must pass it on');
});

test('waiting bytes: a stream that holds bytes already is left alone, so nothing overtakes them', async (t) => {
  const { near, far } = await socketPair(t);
  await written(far, 'in the kernel');
  // As a router that peeked at the first bytes and put them back.
  near.unshift(Buffer.from('put back, '));
  const got = takeWaitingBytes(near);
  assert.ok(Buffer.isBuffer(got) && got.length === 0, 'nothing taken from the kernel');
  far.end();
  near.resume();
  assert.equal((await readToEnd(near)).toString(), 'put back, in the kernel');
});
