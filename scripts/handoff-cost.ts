/**
 * What one hop between processes costs per connection: the design note "Beyond one
 * core" in docs/benchmarks.md needs it to decide whether a socket may be passed from the
 * process that accepted it to the one that owns its service.
 *
 *   node dist/scripts/handoff-cost.js [CONNECTIONS]
 *
 * A parent accepts CONNECTIONS loopback connections twice: once serving each itself
 * (a one-line echo), once handing each to a child process over the IPC channel
 * (src/net/hand-over.ts, as an upgrade does) where the child serves it. It prints the
 * CPU time per connection of each process in each mode; the difference is the hop.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { adoptHandedOver, sendSocket } from '../src/net/hand-over.js';

const ROLE = process.argv[2];

function serve(socket: Socket): void {
  socket.on('error', () => {});
  socket.once('data', (chunk: Buffer) => socket.end(chunk));
  socket.resume();
}

function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/** The load, in its own process so that none of its CPU lands on the processes measured. */
async function clients(port: number, connections: number): Promise<void> {
  for (let done = 0; done < connections; done += 50) {
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        const client = connect(port, '127.0.0.1');
        client.on('error', () => {});
        client.end('x');
        client.resume();
        await new Promise((resolve) => client.once('close', resolve));
      }),
    );
  }
}

if (ROLE === 'clients') {
  await clients(Number(process.argv[3]), Number(process.argv[4]));
} else if (ROLE === 'child') {
  process.on('message', (msg: { kind: string; head?: string }, socket?: Socket) => {
    if (msg.kind === 'socket' && socket !== undefined) serve(adoptHandedOver(socket, Buffer.from(msg.head ?? '', 'base64')));
    if (msg.kind === 'cpu') process.send?.({ kind: 'cpu', micros: cpuMicros() });
  });
} else {
  const connections = Number(process.argv[2] ?? 5000);
  const load = async (port: number): Promise<void> => {
    const generator = fork(fileURLToPath(import.meta.url), ['clients', String(port), String(connections)], { stdio: 'inherit' });
    await once(generator, 'exit');
  };
  const child = fork(fileURLToPath(import.meta.url), ['child'], { stdio: 'inherit' });
  const childCpu = async (): Promise<number> => {
    child.send({ kind: 'cpu' });
    const [reply] = (await once(child, 'message')) as [{ micros: number }];
    return reply.micros;
  };
  const run = async (handOff: boolean): Promise<{ parent: number; child: number }> => {
    const server: Server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
      if (!handOff) return serve(socket);
      sendSocket(socket, (head, sent) => (child as ChildProcess).send({ kind: 'socket', head: head.toString('base64') }, sent));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const parentBefore = cpuMicros();
    const childBefore = await childCpu();
    await load(port);
    const parent = (cpuMicros() - parentBefore) / connections;
    const childUsed = ((await childCpu()) - childBefore) / connections;
    server.close();
    return { parent, child: childUsed };
  };
  await run(false); // warm-up of both paths
  await run(true);
  const local = await run(false);
  const handed = await run(true);
  const fmt = (n: number): string => n.toFixed(1).padStart(7);
  console.log(`connections per mode: ${connections}`);
  console.log(`served where accepted: parent ${fmt(local.parent)} µs, child ${fmt(local.child)} µs per connection`);
  console.log(`handed to the child:   parent ${fmt(handed.parent)} µs, child ${fmt(handed.child)} µs per connection`);
  console.log(`hop: ${fmt(handed.parent + handed.child - local.parent - local.child)} µs of CPU per connection, both processes together`);
  child.kill();
}
