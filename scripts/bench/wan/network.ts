/**
 * The three hosts of `npm run bench -- --wan`: network namespaces client, relay and
 * service, joined by two links (client—relay, relay—service) that each delay every
 * packet 10 ms ± 1 ms one way. A link is a veth pair with `tc netem` on both ends where
 * the kernel has netem, else a TUN device in each namespace with benchtool's `wire` mode
 * delaying packets in between (this machine's kernel has no sch_netem). The client and
 * the service have no route to each other: every byte goes through the relay host.
 *
 * Everything made here is named with this process's pid, remembered, and removed on
 * exit however the bench ends (Ctrl-C included): the processes left inside our own
 * namespaces are killed by pid, then the namespaces deleted, which removes their links.
 * Nothing outside them is ever touched.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { findProgram } from '../paths.js';
import { sleep, startProcess, tail, type Proc } from '../procs.js';

export const HOSTS = ['client', 'relay', 'service'] as const;
export type Host = (typeof HOSTS)[number];

/** The addresses of docs/benchmarks.md's drawing. */
export const ADDRESS = {
  client: '10.21.1.1',
  relayFront: '10.21.1.2',
  relayBack: '10.21.2.1',
  service: '10.21.2.2',
} as const;

export const ONE_WAY_DELAY_US = 10_000;
export const JITTER_US = 1_000;

export type LinkKind = 'netem' | 'tun-wire';

export interface Network {
  ns: Record<Host, string>;
  kind: LinkKind;
  /** The TUN wire's process (tun-wire only). */
  wire?: Proc;
  /** `[command, args]` running a program on one of the hosts. */
  on(host: Host, command: string, args: string[]): [string, string[]];
}

const made: string[] = [];
let hooked = false;

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function quiet(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

/** Synchronous, for the exit path: kills what runs in our namespaces, then deletes them. */
export function removeNamespaces(): void {
  for (const ns of made.splice(0).reverse()) {
    for (const pid of quiet('ip', ['netns', 'pids', ns]).split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    quiet('ip', ['netns', 'del', ns]);
  }
}

/** Why the WAN bench cannot run here, or undefined when it can. */
export function missingPrerequisite(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'needs root (ip netns), run as root';
  if (findProgram('ip') === undefined) return 'needs iproute2 (apt-get install iproute2)';
  // Root in a container may still lack CAP_SYS_ADMIN: try once.
  const probe = `bench-wan-${process.pid}-probe`;
  try {
    addNamespace(probe);
  } catch (err) {
    return `cannot create a network namespace (${((err as { stderr?: Buffer }).stderr?.toString() ?? String(err)).trim()})`;
  } finally {
    removeNamespaces();
  }
  return undefined;
}

function addNamespace(name: string): void {
  if (!hooked) {
    hooked = true;
    process.on('exit', removeNamespaces);
  }
  ip(['netns', 'add', name]);
  made.push(name);
  ip(['-n', name, 'link', 'set', 'lo', 'up']);
}

/** A veth pair with netem on both ends; false (and nothing left behind) if the kernel has no veth or no netem. */
function vethWithNetem(a: { ns: string; dev: string }, b: { ns: string; dev: string }): boolean {
  try {
    ip(['link', 'add', a.dev, 'netns', a.ns, 'type', 'veth', 'peer', 'name', b.dev, 'netns', b.ns]);
  } catch {
    return false; // no veth in this kernel: the TUN wire needs none
  }
  try {
    for (const end of [a, b]) {
      execFileSync('ip', ['netns', 'exec', end.ns, 'tc', 'qdisc', 'add', 'dev', end.dev, 'root', 'netem', 'delay', `${ONE_WAY_DELAY_US}us`, `${JITTER_US}us`], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    }
    return true;
  } catch {
    ip(['-n', a.ns, 'link', 'del', a.dev]);
    return false;
  }
}

async function startWire(benchtool: string, ends: string[]): Promise<Proc> {
  const wire = startProcess('wire', benchtool, ['wire', String(ONE_WAY_DELAY_US), String(JITTER_US), ...ends], { env: { BENCHTOOL_ALARM_S: '0' } });
  const ready = await wire.waitLine(/^\{"(ready|error)"/, 5000);
  if (ready[1] === 'error') throw new Error(`the TUN wire could not start: ${wire.stdout.at(-1) ?? ''}`);
  return wire;
}

function address(ns: string, dev: string, local: string, peer: string): void {
  ip(['-n', ns, 'addr', 'add', local, 'peer', `${peer}/32`, 'dev', dev]);
  ip(['-n', ns, 'link', 'set', dev, 'up']);
}

/** Builds the three hosts and their two links; removeNamespaces() undoes it. */
export async function buildNetwork(benchtool: string): Promise<Network> {
  const prefix = `bench-wan-${process.pid}`;
  const ns = { client: `${prefix}-client`, relay: `${prefix}-relay`, service: `${prefix}-service` };
  for (const host of HOSTS) addNamespace(ns[host]);
  // Device names are per namespace, but a veth is made before it moves: keep them unique.
  const dev = { client: `wc${process.pid}`, relayFront: `wrc${process.pid}`, relayBack: `wrs${process.pid}`, service: `ws${process.pid}` };
  const front = { a: { ns: ns.client, dev: dev.client }, b: { ns: ns.relay, dev: dev.relayFront } };
  const back = { a: { ns: ns.relay, dev: dev.relayBack }, b: { ns: ns.service, dev: dev.service } };
  let kind: LinkKind = 'netem';
  let wire: Proc | undefined;
  if (findProgram('tc') === undefined || !vethWithNetem(front.a, front.b)) {
    kind = 'tun-wire';
    if (!existsSync('/dev/net/tun')) throw new Error('the kernel has neither the netem qdisc nor /dev/net/tun: no way to delay packets');
    wire = await startWire(
      benchtool,
      [front, back].flatMap((l) => [`${l.a.ns}:${l.a.dev}`, `${l.b.ns}:${l.b.dev}`]),
    );
  } else if (!vethWithNetem(back.a, back.b)) {
    throw new Error('netem worked on one link and not on the other');
  }
  address(ns.client, dev.client, ADDRESS.client, ADDRESS.relayFront);
  address(ns.relay, dev.relayFront, ADDRESS.relayFront, ADDRESS.client);
  address(ns.relay, dev.relayBack, ADDRESS.relayBack, ADDRESS.service);
  address(ns.service, dev.service, ADDRESS.service, ADDRESS.relayBack);
  return {
    ns,
    kind,
    ...(wire === undefined ? {} : { wire }),
    on: (host, command, args) => ['ip', ['netns', 'exec', ns[host], command, ...args]],
  };
}

/** Resolves once something listens on TCP `port` on `host` (bounded), rejects if `proc` dies first. */
export async function waitListening(net: Network, host: Host, port: number, proc: Proc, ms = 10_000): Promise<void> {
  const [command, args] = net.on(host, 'ss', ['-Hltn', `sport = :${port}`]);
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(50)) {
    if (!proc.alive()) throw new Error(`${proc.name} exited: ${tail(proc)}`);
    if (quiet(command, args).trim() !== '') return;
  }
  throw new Error(`nothing listens on port ${port} of the ${host} host after ${ms} ms (${proc.name}: ${tail(proc)})`);
}
