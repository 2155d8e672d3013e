import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { deadline, dial } from './net.js';

/**
 * A public client that keeps its tunnel open and sends a numbered line every 100 ms.
 * `finish()` half-closes it and checks that every byte came back and the echo then
 * ended: a tunnel cut on the way fails it.
 */
export async function longTunnel(t: TestContext, port: number, name: string): Promise<{ finish: () => Promise<void>; cutReason: () => string | undefined }> {
  const socket = await dial(t, port);
  const sent: Buffer[] = [];
  const received: Buffer[] = [];
  let cut: string | undefined;
  let finishing = false;
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.on('error', (err) => (cut ??= `error ${(err as NodeJS.ErrnoException).code ?? err.message}`));
  socket.on('end', () => {
    if (!finishing) cut ??= 'ended by the other side';
  });
  let n = 0;
  const timer = setInterval(() => {
    const line = Buffer.from(`${name} line ${n++}\n`);
    sent.push(line);
    socket.write(line);
  }, 100);
  t.after(() => clearInterval(timer));
  return {
    cutReason: () => cut,
    finish: async () => {
      clearInterval(timer);
      finishing = true;
      if (cut !== undefined) throw new Error(`${name} was cut: ${cut}`);
      const ended = once(socket, 'end', { signal: deadline(10_000) });
      socket.end();
      await ended;
      const echoed = Buffer.concat(received);
      const expected = Buffer.concat(sent);
      if (!echoed.equals(expected)) throw new Error(`${name}: sent ${expected.length} bytes, ${echoed.length} came back`);
    },
  };
}

/**
 * Short connections at `perSecond`: each sends a line, half-closes, and must get the
 * line back and the end of the echo. Counts the failures, with the first few reasons.
 */
export function shortConnections(port: number, perSecond: number): { stop: () => Promise<{ ok: number; failed: string[]; longestMs: number }> } {
  const results = { ok: 0, failed: [] as string[], longestMs: 0 };
  const running = new Set<Promise<void>>();
  let n = 0;
  const one = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const line = `short ${n++}\n`;
      const started = performance.now();
      const socket: Socket = connect(port, '127.0.0.1');
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => fail('no echo within 10 s'), 10_000);
      const fail = (why: string): void => {
        clearTimeout(timer);
        socket.destroy();
        results.failed.push(`${line.trim()}: ${why}`);
        resolve();
      };
      socket.on('error', (err) => fail((err as NodeJS.ErrnoException).code ?? err.message));
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('end', () => {
        if (Buffer.concat(chunks).toString() !== line) return fail(`got ${JSON.stringify(Buffer.concat(chunks).toString())}`);
        clearTimeout(timer);
        socket.destroy();
        results.ok++;
        results.longestMs = Math.max(results.longestMs, performance.now() - started);
        resolve();
      });
      socket.end(line);
    });
  const interval = setInterval(() => {
    const done = one();
    running.add(done);
    void done.then(() => running.delete(done));
  }, 1000 / perSecond);
  return {
    stop: async () => {
      clearInterval(interval);
      await Promise.all(running);
      return results;
    },
  };
}

/** Connects to `port` every 20 ms and counts the refusals: a listening socket must never close. */
export function refusalProbe(port: number): { stop: () => number } {
  let refused = 0;
  const interval = setInterval(() => {
    const socket = connect(port, '127.0.0.1');
    socket.on('connect', () => socket.destroy());
    socket.on('error', () => refused++);
  }, 20);
  return {
    stop: () => {
      clearInterval(interval);
      return refused;
    },
  };
}
