/**
 * Pools with 1, 2 and 3 members: short connections a second and the time to the first
 * echoed byte, through ./relay, each member its own process speaking the wire protocol
 * by hand (docs/protocol.md §17) and echoing. What it measures is the relay's side of a
 * pool (dispatch among members); a member is as cheap as a service can be. With
 * `--expose` each member is instead `./expose --pool-file` in front of one echo server
 * of its own process: the whole path a user runs.
 *
 *   npm run build && node dist/scripts/pool-bench.js [--seconds 3] [--first 300] [--expose]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SELF = fileURLToPath(import.meta.url);
const LANES = 8;

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at < 0 ? fallback : Number(process.argv[at + 1]);
}

/** A member: registers with pool=KEY, prints "ready PORT", echoes every client. */
function member(controlPort: number, key: string): void {
  const control = connect(controlPort, '127.0.0.1');
  let buffer = '';
  let dataPort = 0;
  control.setEncoding('latin1');
  control.on('connect', () => control.write(`HELLO 1 host=127.0.0.1 feat=pool pool=${key}\n`));
  control.on('close', () => process.exit(0));
  control.on('data', (text: string) => {
    buffer += text;
    let lf: number;
    while ((lf = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, lf);
      const [verb, arg] = line.split(' ');
      buffer = buffer.slice(lf + 1);
      if (verb === 'PING') control.write('PONG\n');
      else if (verb === 'OK') {
        dataPort = Number(/ data=(\d+)/.exec(line)?.[1]);
        process.stdout.write(`ready ${arg} ${dataPort}\n`);
      } else if (verb === 'CONNECT') dialBack(dataPort, arg!);
      else if (verb === 'ERR') process.exit(1);
    }
  });
}

function dialBack(dataPort: number, token: string): void {
  const data = connect({ port: dataPort, host: '127.0.0.1', allowHalfOpen: true });
  data.on('error', () => data.destroy());
  data.write(`DATA ${token}\n`);
  let head = Buffer.alloc(0);
  const onHead = (chunk: Buffer): void => {
    head = Buffer.concat([head, chunk]);
    const lf = head.indexOf(0x0a);
    if (lf < 0) return;
    data.off('data', onHead);
    if (lf + 1 < head.length) data.write(head.subarray(lf + 1));
    data.pipe(data);
  };
  data.on('data', onHead);
}

/** The target of the `--expose` members: an echo server that prints its port. */
function echoTarget(): void {
  const server = createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`ready ${(server.address() as AddressInfo).port}\n`));
}

/** `count` members of one new pool; their public port and the processes to stop. */
async function startMembers(controlPort: number, count: number, expose: boolean): Promise<{ port: number; children: ChildProcess[] }> {
  if (!expose) {
    const key = randomBytes(16).toString('hex');
    const members = Array.from({ length: count }, () => start([SELF, 'member', String(controlPort), key]));
    const ready = await Promise.all(members.map((child) => lineOf(child, 'stdout', /^ready \S+:(\d+)/m)));
    return { port: Number(ready[0]![1]), children: members };
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'pool-bench-'));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  for (let i = 0; i < count; i++) {
    const target = start([SELF, 'echo-target']);
    const targetPort = (await lineOf(target, 'stdout', /^ready (\d+)/m))[1]!;
    const member = start(['127.0.0.1', String(controlPort), targetPort, '--pool-file', path.join(dir, 'pool.key')], path.join(ROOT, 'expose'));
    ports.push(Number((await lineOf(member, 'stdout', /^established relay address: \S+:(\d+)$/m))[1]));
    member.stderr!.resume();
    children.push(target, member);
  }
  if (new Set(ports).size !== 1) throw new Error(`the members got different addresses: ${ports.join(' ')}`);
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return { port: ports[0]!, children };
}

function start(args: string[], command = process.execPath): ChildProcess {
  return spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RELAY_SECRET: '' } });
}

async function lineOf(child: ChildProcess, stream: 'stdout' | 'stderr', pattern: RegExp): Promise<RegExpExecArray> {
  let text = '';
  for await (const chunk of child[stream]!) {
    text += String(chunk);
    const match = pattern.exec(text);
    if (match !== null) return match;
  }
  throw new Error(`no ${pattern} from the child`);
}

/** One client: connect, send a byte, wait for its echo; the milliseconds it took. */
async function oneEcho(port: number): Promise<number> {
  const started = performance.now();
  const client = connect(port, '127.0.0.1');
  client.on('error', () => undefined);
  await once(client, 'connect');
  client.write('x');
  await once(client, 'data');
  const ms = performance.now() - started;
  client.destroy();
  return ms;
}

const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

async function measure(port: number, seconds: number, first: number): Promise<{ perSecond: number; median: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < first; i++) times.push(await oneEcho(port));
  times.sort((a, b) => a - b);
  let done = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: LANES }, async () => {
      while (performance.now() < until) {
        await oneEcho(port);
        done++;
      }
    }),
  );
  return { perSecond: done / seconds, median: quantile(times, 0.5), p99: quantile(times, 0.99) };
}

async function main(): Promise<void> {
  const seconds = flag('seconds', 3);
  const first = flag('first', 300);
  const expose = process.argv.includes('--expose');
  const relay = start(['0', '--ports', '41000-41099', '--log-level', 'info'], path.join(ROOT, 'relay'));
  const controlPort = Number((await lineOf(relay, 'stderr', /"controlPort":(\d+)/))[1]);
  relay.stderr!.resume();
  console.log(`| ${expose ? './expose members' : 'members'} | short connections/s (${LANES} at a time, ${seconds} s) | first echo, median | first echo, p99 |`);
  console.log('|---|---|---|---|');
  try {
    for (const count of [1, 2, 3]) {
      const { port, children } = await startMembers(controlPort, count, expose);
      await measure(port, 1, 50); // warm-up
      const { perSecond, median, p99 } = await measure(port, seconds, first);
      console.log(`| ${count} | ${Math.round(perSecond)} | ${median.toFixed(2)} ms | ${p99.toFixed(2)} ms |`);
      for (const child of children) child.kill();
    }
  } finally {
    relay.kill('SIGTERM');
  }
}

if (process.argv[2] === 'member') member(Number(process.argv[3]), process.argv[4]!);
else if (process.argv[2] === 'echo-target') echoTarget();
else await main();
