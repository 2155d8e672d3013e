/**
 * The backend of the bench's `relay` path: a service built on the library whose
 * connection handler *is* the backend, so the relay is the only forwarder between the
 * load generator and the bytes' final consumer (the position socat and haproxy hold).
 *
 * It speaks exactly the protocol of the C backend (scripts/bench/native/common.h):
 *   'e'            echo every later byte until EOF
 *   's' + u64 BE   sink that many bytes, then answer 'k'
 *   'r' + u64 BE   source that many bytes
 * After a sink or a source the connection takes the next command.
 *
 * Usage: node dist/scripts/relayed-backend.js RELAYHOST RELAYPORT [--prewarm N|auto] [--ca PEM] [--name NAME]
 * Prints `established relay address: HOST:PORT` on stdout, like ./echoserver, and on
 * SIGUSR1 `clients N prewarmed M` (tunnel.clientCounts). --ca: TLS to the relay.
 *
 *        node dist/scripts/relayed-backend.js --listen PORT
 * serves the same handler on 127.0.0.1:PORT with a plain net.Server, no relay (the
 * bench's `node` path: what any Node service pays per connection, the library's floor),
 * and prints `listening on 127.0.0.1:PORT`.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { listenViaRelay } from '../src/index.js';

// Shared by every source: writing the same bytes again costs no allocation.
const SOURCE_CHUNK = Buffer.alloc(256 * 1024, 'b');
const ACK = Buffer.from('k');

type State = 'cmd' | 'prelude' | 'hdr' | 'echo' | 'sink' | 'source';

function serveBenchProtocol(socket: Socket): void {
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  let state: State = 'cmd';
  let command = 0;
  const header = Buffer.alloc(8);
  let headerLength = 0;
  let remaining = 0;

  // Writes until the socket's buffer is full, then continues on 'drain': bounded memory.
  const pumpSource = (): void => {
    while (state === 'source' && remaining > 0) {
      const chunk = remaining >= SOURCE_CHUNK.length ? SOURCE_CHUNK : SOURCE_CHUNK.subarray(0, remaining);
      remaining -= chunk.length;
      if (remaining === 0) state = 'cmd';
      if (!socket.write(chunk)) return;
    }
  };

  const consume = (chunk: Buffer): void => {
    let off = 0;
    while (off < chunk.length) {
      switch (state) {
        case 'cmd': {
          command = chunk[off++]!;
          if (command === 0x65 /* e */) state = 'echo';
          else if (command === 0x47 /* G */) state = 'prelude';
          else if (command === 0x73 /* s */ || command === 0x72 /* r */) {
            state = 'hdr';
            headerLength = 0;
          } else {
            socket.destroy();
            return;
          }
          break;
        }
        case 'prelude': {
          // The bench's names path sends an HTTP request head first (the relay routes by its
          // Host): skipped up to its blank line, then the commands begin.
          const end = chunk.indexOf('\r\n\r\n', off);
          if (end === -1) return; // the rest of this chunk is head; a blank line split over two chunks is not expected
          off = end + 4;
          state = 'cmd';
          break;
        }
        case 'hdr': {
          const take = Math.min(8 - headerLength, chunk.length - off);
          chunk.copy(header, headerLength, off, off + take);
          headerLength += take;
          off += take;
          if (headerLength < 8) break;
          remaining = Number(header.readBigUInt64BE(0));
          if (command === 0x72) {
            // A client must not talk during a source: the rest of the chunk is ignored.
            state = remaining === 0 ? 'cmd' : 'source';
            pumpSource();
            return;
          }
          state = 'sink';
          if (remaining === 0) finishSink();
          break;
        }
        case 'sink': {
          const take = Math.min(remaining, chunk.length - off);
          remaining -= take;
          off += take;
          if (remaining === 0) finishSink();
          break;
        }
        case 'echo':
          // Backpressure as in the C backend: stop reading while the echo is unsent.
          if (!socket.write(off === 0 ? chunk : chunk.subarray(off))) socket.pause();
          return;
        case 'source':
          return;
      }
    }
  };
  const finishSink = (): void => {
    state = 'cmd';
    socket.write(ACK);
  };

  socket.on('data', consume);
  socket.on('drain', () => {
    if (state === 'source') pumpSource();
    else socket.resume();
  });
  // Half-close kept: our FIN follows the client's once every echoed byte is queued.
  socket.on('end', () => socket.end());
}

function main(): void {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { prewarm: { type: 'string', default: '0' }, ca: { type: 'string' }, listen: { type: 'string' }, name: { type: 'string' } },
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => process.exit(0));
  if (values.listen !== undefined) {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, serveBenchProtocol);
    server.listen({ port: Number(values.listen), host: '127.0.0.1', backlog: 4096 }, () => {
      process.stdout.write(`listening on 127.0.0.1:${values.listen}\n`);
    });
    return;
  }
  const [host, port] = positionals;
  const prewarm = values.prewarm === 'auto' ? 'auto' : Number(values.prewarm);
  if (host === undefined || port === undefined || (prewarm !== 'auto' && (!Number.isInteger(prewarm) || prewarm < 0))) {
    process.stderr.write('usage: relayed-backend RELAYHOST RELAYPORT [--prewarm N|auto] [--ca PEM] | --listen PORT\n');
    process.exit(2);
  }
  const tunnel = listenViaRelay(serveBenchProtocol, {
    host,
    port: Number(port),
    ...(prewarm === 'auto' || prewarm > 0 ? { prewarm } : {}),
    ...(values.ca === undefined ? {} : { tls: { ca: readFileSync(values.ca), servername: 'localhost' } }),
    ...(values.name === undefined ? {} : { name: values.name }),
  });
  process.on('SIGUSR1', () => {
    const { clients, prewarmed } = tunnel.clientCounts;
    process.stdout.write(`clients ${clients} prewarmed ${prewarmed}\n`);
  });
  tunnel.on('established', ({ address }: { address: string }) => process.stdout.write(`established relay address: ${address}\n`));
  tunnel.on('error', (err: Error) => {
    process.stderr.write(`relayed-backend: ${err.message}\n`);
    process.exit(1);
  });
}

main();
