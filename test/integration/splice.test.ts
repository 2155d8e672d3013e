import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { splice, type SpliceResult } from '../../src/net/splice.js';
import { deadline, dial, howItEnds, listenLocal, randomData, readAtLeast, readToEnd, sha256, within } from '../helpers/net.js';

/**
 * Two real TCP connections joined by splice(): `left` and `right` are the outer ends a
 * test drives; the splice sits between their server-side sockets, as in the relay.
 */
async function splicedPair(t: TestContext): Promise<{ left: Socket; right: Socket; result: Promise<SpliceResult> }> {
  const accepted: Socket[] = [];
  const ready = new Promise<void>((resolve) => {
    const take = (socket: Socket): void => {
      accepted.push(socket);
      if (accepted.length === 2) resolve();
    };
    void listenLocal(t, take).then(async ({ port }) => {
      left = await dial(t, port);
      right = await dial(t, port);
    });
  });
  let left!: Socket;
  let right!: Socket;
  await within(ready, 5000, 'both connections accepted');
  await within(
    (async () => {
      while (left === undefined || right === undefined) await new Promise((r) => setImmediate(r));
    })(),
    5000,
    'both clients connected',
  );
  // Accept order equals connect order on loopback for sequential connects.
  const [a, b] = accepted as [Socket, Socket];
  return { left, right, result: splice(a, b) };
}

test('splice: bytes flow both ways at once, intact, and byte counts are exact', async (t) => {
  const { left, right, result } = await splicedPair(t);
  const toRight = randomData(8 * 1024 * 1024);
  const toLeft = randomData(5 * 1024 * 1024);
  const rightGot = readToEnd(right, 30_000);
  const leftGot = readToEnd(left, 30_000);
  left.end(toRight);
  right.end(toLeft);
  assert.equal(sha256(await rightGot), sha256(toRight));
  assert.equal(sha256(await leftGot), sha256(toLeft));
  const settled = await within(result, 5000, 'splice to settle');
  assert.equal(settled.bytesAToB, toRight.length);
  assert.equal(settled.bytesBToA, toLeft.length);
  assert.equal(settled.outcome, 'end');
});

test('half-close: after one side sends FIN the other direction keeps flowing', async (t) => {
  const { left, right, result } = await splicedPair(t);
  left.end('request');
  assert.equal((await readToEnd(right)).toString(), 'request');
  // Right's direction is still open after left's FIN arrived.
  right.write('answer part 1, ');
  right.end('part 2');
  assert.equal((await readToEnd(left)).toString(), 'answer part 1, part 2');
  const settled = await within(result, 5000, 'splice to settle');
  assert.equal(settled.closedFirst === 'a' || settled.closedFirst === 'b', true);
  assert.equal(settled.outcome, 'end');
});

test('reset: a reset on one side arrives as a reset on the other, promptly', async (t) => {
  const { left, right, result } = await splicedPair(t);
  left.write('x');
  await readAtLeast(right, 1);
  const seen = howItEnds(right, 2000);
  left.resetAndDestroy();
  assert.equal(await seen, 'reset');
  const settled = await within(result, 2000, 'splice to settle');
  assert.equal(settled.outcome, 'reset');
  assert.equal(settled.closedFirst, 'a');
});

test('close while the other side is mid-transfer: the sender learns promptly instead of writing into nowhere', async (t) => {
  const { left, right, result } = await splicedPair(t);
  // right floods; left vanishes without reading.
  const big = randomData(1024 * 1024);
  const pump = async (): Promise<void> => {
    for (let i = 0; i < 256 && !right.destroyed; i++) {
      if (!right.write(big)) await once(right, 'drain', { signal: deadline(5000) }).catch(() => undefined);
    }
  };
  const ends = howItEnds(right, 5000);
  void pump();
  left.resetAndDestroy();
  assert.equal(await ends, 'reset');
  await within(result, 5000, 'splice to settle');
});

test('backpressure: a reader that stops reading holds the writer back instead of buffering without bound', async (t) => {
  const { left, right, result } = await splicedPair(t);
  right.pause();
  const chunk = Buffer.alloc(64 * 1024, 7);
  let written = 0;
  // Write until the kernel and the splice push back; with no backpressure this loop
  // would run to its bound of 256 MiB.
  for (let i = 0; i < 4096; i++) {
    written += chunk.length;
    if (!left.write(chunk)) {
      const drained = await once(left, 'drain', { signal: AbortSignal.timeout(300) }).then(
        () => true,
        () => false,
      );
      if (!drained) break;
    }
  }
  assert.ok(written < 64 * 1024 * 1024, `wrote ${written} bytes into a stalled reader`);
  // And nothing was lost: the reader gets every byte once it reads.
  left.end();
  right.resume();
  const got = await readToEnd(right, 30_000);
  assert.equal(got.length, written);
  right.end();
  await within(result, 5000, 'splice to settle');
});
