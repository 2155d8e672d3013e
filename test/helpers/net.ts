import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { nextClaimedPort, portBlock } from './port-blocks.js';

export { portBlock };

/** Fails a wait that would otherwise hang: every test waits with a bound. */
export function deadline(ms: number): AbortSignal {
  return AbortSignal.timeout(ms);
}

export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Connects a client the relay is expected to refuse, and says how it ended. The relay
 * resets refused clients at accept, so the reset may arrive before the connect completes
 * (Node then reports it as a connect error): that counts as 'reset' too.
 */
export async function refusedHow(t: TestContext, port: number, host = '127.0.0.1'): Promise<'end' | 'reset' | 'close'> {
  const socket = connect({ port, host, allowHalfOpen: true });
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  return howItEnds(socket);
}

/** A connected client socket, half-open allowed, closed by the test's cleanup. */
export async function dial(t: TestContext, port: number, host = '127.0.0.1'): Promise<Socket> {
  const socket = connect({ port, host, allowHalfOpen: true });
  // Resets are expected in some tests; howItEnds() and friends observe them.
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  await once(socket, 'connect', { signal: deadline(5000) });
  return socket;
}

/** Everything the socket sends until its FIN; rejects on a reset or after ms. */
export async function readToEnd(socket: Socket, ms = 10_000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.resume();
  await once(socket, 'end', { signal: deadline(ms) });
  return Buffer.concat(chunks);
}

/** Reads until at least n bytes arrived; returns exactly what arrived. */
export async function readAtLeast(socket: Socket, n: number, ms = 10_000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  await within(
    new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        chunks.push(chunk);
        total += chunk.length;
        if (total >= n) {
          socket.off('data', onData);
          socket.pause();
          resolve();
        }
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error(`closed after ${total} of ${n} bytes`)));
      socket.resume();
    }),
    ms,
    `reading ${n} bytes`,
  );
  return Buffer.concat(chunks);
}

/** How a socket ended: 'end' (FIN), 'reset' (ECONNRESET/EPIPE) or 'close'. */
export async function howItEnds(socket: Socket, ms = 5000): Promise<'end' | 'reset' | 'close'> {
  // Events already past are not emitted again.
  if (socket.readableEnded) return 'end';
  if (socket.closed) return 'close';
  return within(
    new Promise((resolve) => {
      socket.once('end', () => resolve('end'));
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'reset' : 'close'));
      socket.once('close', () => resolve('close'));
      socket.resume();
    }),
    ms,
    'the socket to end',
  );
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Sends data in random-sized chunks while reading concurrently; returns what came back. */
export async function echoThrough(socket: Socket, data: Buffer, maxChunk = 65536, ms = 60_000): Promise<Buffer> {
  const received = readToEnd(socket, ms);
  let offset = 0;
  while (offset < data.length) {
    const size = Math.min(data.length - offset, 1 + Math.floor(Math.random() * maxChunk));
    const more = socket.write(data.subarray(offset, offset + size));
    offset += size;
    if (!more) await once(socket, 'drain', { signal: deadline(ms) });
  }
  socket.end();
  return received;
}

export function randomData(size: number): Buffer {
  return randomBytes(size);
}

/** A TCP server on 127.0.0.1 port 0, closed (connections first) by the test's cleanup. */
export async function listenLocal(t: TestContext, onConnection: (socket: Socket) => void, allowHalfOpen = true): Promise<{ server: Server; port: number }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening', { signal: deadline(5000) });
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return { server, port: (server.address() as AddressInfo).port };
}

/**
 * A port that was free a moment ago (for a relay that must restart on the same one, an
 * etcd): from this process's claimed blocks (port-blocks.ts), below the ephemeral range,
 * where an outgoing connection of a test running beside this one cannot take it between
 * our check and the listen that follows (seen: etcd's "address already in use").
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = nextClaimedPort();
    const server = createServer();
    const free = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!free) continue;
    await new Promise((resolve) => server.close(resolve));
    return port;
  }
  throw new Error('no free port in 50 tries of claimed blocks');
}

/** A promise with its resolve function outside (Promise.withResolvers is newer than Node 20). */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** `--ports A-B` for a fresh block. */
export function portsFlag(size = 100): string[] {
  const { first, last } = portBlock(size);
  return ['--ports', `${first}-${last}`];
}

/** A port block whose first port is free right now, for a test that expects exactly that port. */
export async function freeBlock(size = 100): Promise<{ first: number; last: number }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const block = portBlock(size);
    const probe = createServer();
    const free = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(block.first, () => resolve(true));
    });
    if (free) {
      await new Promise((resolve) => probe.close(resolve));
      return block;
    }
  }
  throw new Error('no free port block found in 20 tries');
}

/** Polls check() until it is true, failing after ms: for state that emits no event (counters, /proc, logs, HTTP). */
export async function eventually(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Both ends of one TCP connection on 127.0.0.1: `near` as a relay's listener hands it
 * over (paused, half-open allowed), `far` the peer's end. Both, and the listener, are
 * closed by the test's cleanup.
 */
export async function socketPair(t: TestContext): Promise<{ near: Socket; far: Socket }> {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
  t.after(() => server.close());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening', { signal: deadline(5000) });
  const accepted = once(server, 'connection', { signal: deadline(5000) });
  const far = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  // Resets are what several tests expect; howItEnds() and Peer observe them.
  far.on('error', () => {});
  t.after(() => far.destroy());
  const [[near]] = (await Promise.all([accepted, once(far, 'connect', { signal: deadline(5000) })])) as [[Socket], unknown];
  near.on('error', () => {});
  t.after(() => near.destroy());
  server.close();
  return { near, far };
}
