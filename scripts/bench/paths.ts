/**
 * Starts each path the bench compares, all on 127.0.0.1, in front of the same C
 * backend (except `relay`, whose backend is the relayed service itself). A path
 * knows which of its processes are forwarders (their CPU and memory are the cost
 * being compared), which is the relayed service, and which consumes the bytes.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect, createServer } from 'node:net';
import path from 'node:path';
import { descendants } from './proc-stats.js';
import { ROOT, sleep, startProcess, stopProcess, tail, type Proc } from './procs.js';

export const PATH_NAMES = [
  'direct',
  'socat',
  'haproxy',
  'haproxy-default',
  'node',
  'haproxy+node',
  'relay',
  'relay@baseline',
  'relay+expose',
  'relay+prewarm',
  'relay+auto',
  'relay+tls',
  'relay+fleet',
  'relay+names',
] as const;
/** Paths measured only for the connection figures (first echo, conns/s, bursts). */
export const CONNECTION_ONLY: readonly PathName[] = ['haproxy+node', 'relay+prewarm', 'relay+auto', 'relay+tls', 'relay+fleet', 'relay+names'];
export type PathName = (typeof PATH_NAMES)[number];

const HOST = '127.0.0.1';
/** Relay limits high enough that the relay's limits are never what is measured. */
const RELAY_FLAGS = ['--bind', HOST, '--max-clients', '20000', '--max-pending', '20000', '--max-tunnels', '20000', '--log-level', 'warn'];

export interface BenchPath {
  name: PathName;
  /** Where the load generator connects. */
  port: number;
  forwarders: { name: string; pid: number }[];
  relayPid: number | undefined;
  /** The relay's control (and data) port, where a relayed service parks its prewarmed connections. */
  relayPort?: number;
  /** The relayed service process: relayed-backend for `relay`, ./expose for `relay+expose`. */
  servicePid: number | undefined;
  /** The process that consumes and produces the bytes. */
  backendPid: number;
  /** Processes owned by this path, stopped in reverse order. */
  procs: Proc[];
  /** The library-based service (relayed-backend), which reports its client counts on SIGUSR1. */
  relayedBackend?: Proc;
  /** Bytes every connection sends first: on a names port, the HTTP request that names the service. */
  prelude?: string;
}

export interface PathContext {
  backend: { proc: Proc; port: number };
  prewarm: number;
  /** The checkout relay@baseline runs from. */
  baseline?: string | undefined;
}

/** The first executable found among the candidates, or undefined. */
export function findProgram(name: string, extra: string[] = []): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin', ...extra];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: HOST, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * A free port below the ephemeral range (32768+), so the bench's own outgoing
 * connections can never have taken it; `span` consecutive ports are free.
 */
export async function freePort(span = 1): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 12000);
    let free = true;
    for (let p = base; p < base + span && free; p++) free = await portIsFree(p);
    if (free) return base;
  }
  throw new Error('no free port found in 20000-32000');
}

/** Resolves once something accepts on port (bounded), rejects if proc dies first. */
async function waitAccepting(port: number, proc: Proc, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!proc.alive()) throw new Error(`${proc.name} exited: ${tail(proc)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: HOST, port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${proc.name} does not accept on ${port} after ${ms} ms: ${tail(proc)}`);
}

function haproxyConfig(port: number, backendPort: number, threads: 'one' | 'default'): string {
  // `haproxy` has one thread: the relay is one event loop, and on a 2-core box shared
  // with the client and the backend more threads only compete. `haproxy-default` leaves
  // nbthread out, as a default install does (one thread per core). maxconn fits
  // RLIMIT_NOFILE 20000.
  return [
    'global',
    '    maxconn 9000',
    ...(threads === 'one' ? ['    nbthread 1'] : []),
    'defaults',
    '    mode tcp',
    '    timeout connect 5s',
    '    timeout client 1h',
    '    timeout server 1h',
    'frontend bench',
    `    bind ${HOST}:${port}`,
    '    default_backend target',
    'backend target',
    `    server backend ${HOST}:${backendPort}`,
    '',
  ].join('\n');
}

/**
 * ./relay on a free port, and a service whose stdout announces its public port. The
 * relay's figures are its worker's (`workerPid`): the master only holds the listening
 * sockets, and a forwarder with a child looks unsettled to the CPU figures.
 */
export async function startRelayed(
  service: (relayPort: number) => Proc,
  flags: string[] = [],
  root = ROOT,
): Promise<{ relay: Proc; relayPort: number; workerPid: number; service: Proc; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const relayPort = await freePort(2);
    const relay = startProcess('relay', path.join(root, 'relay'), [String(relayPort), ...RELAY_FLAGS, ...flags]);
    const svc = service(relayPort);
    try {
      const match = await svc.waitLine(/^established relay address: .+:(\d+)$/, 15_000);
      const [workerPid, ...others] = descendants(relay.pid);
      if (workerPid === undefined || others.length > 0) throw new Error(`the relay master should have one worker, it has ${others.length + (workerPid === undefined ? 0 : 1)}`);
      return { relay, relayPort, workerPid, service: svc, port: Number(match[1]) };
    } catch (err) {
      await stopProcess(svc);
      await stopProcess(relay);
      // A port taken between our probe and the relay's listen: try another one.
      if (attempt >= 3) throw new Error(`relay did not start: ${(err as Error).message}; relay stderr: ${tail(relay)}`);
    }
  }
}

/**
 * A one-member etcd on free loopback ports with a throw-away data directory, for the
 * `relay+fleet` path: a one-node fleet measures what agreeing on ports through etcd and
 * the fleet code cost on top of the single relay.
 */
async function startEtcd(etcd: string): Promise<{ proc: Proc; url: string; dir: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-etcd-'));
  const client = await freePort();
  const peer = await freePort();
  const url = `http://${HOST}:${client}`;
  const peerUrl = `http://${HOST}:${peer}`;
  const proc = startProcess('etcd', etcd, [
    '--data-dir',
    dir,
    '--listen-client-urls',
    url,
    '--advertise-client-urls',
    url,
    '--listen-peer-urls',
    peerUrl,
    '--initial-advertise-peer-urls',
    peerUrl,
    '--initial-cluster',
    `default=${peerUrl}`,
    '--log-level',
    'error',
  ]);
  await waitAccepting(client, proc, 15_000);
  return { proc, url, dir };
}

/** haproxy forwarding a free port to `backendPort`, accepting; skipped where it is not installed. */
async function startHaproxy(name: PathName, backendPort: number, threads: 'one' | 'default'): Promise<{ port: number; proc: Proc } | { skipped: string }> {
  const haproxy = findProgram('haproxy');
  if (haproxy === undefined) return { skipped: 'haproxy is not installed (apt-get install socat haproxy)' };
  const port = await freePort();
  const config = path.join(ROOT, 'bench-results', `${name}-${process.pid}.cfg`);
  writeFileSync(config, haproxyConfig(port, backendPort, threads));
  const proc = startProcess('haproxy', haproxy, ['-db', '-f', config]);
  try {
    await waitAccepting(port, proc);
  } finally {
    rmSync(config, { force: true }); // read once at start; no reloads here
  }
  return { port, proc };
}

/** The `node` path's server (the relay path's backend handler on a plain net.Server), listening. */
async function startNodeBackend(): Promise<{ port: number; proc: Proc }> {
  const port = await freePort();
  const proc = startProcess('node-backend', ...node('relayed-backend.js', ['--listen', String(port)]));
  await proc.waitLine(/^listening on /, 15_000);
  return { port, proc };
}

const node = (script: string, args: string[], root = ROOT): [string, string[]] => [process.execPath, [path.join(root, 'dist', 'scripts', script), ...args]];

/** Starts a path, or says why it is skipped (a peer that is not installed). */
export async function startPath(name: PathName, ctx: PathContext): Promise<BenchPath | { skipped: string }> {
  const backend = ctx.backend;
  const base = { name, relayPid: undefined, servicePid: undefined, backendPid: backend.proc.pid };
  switch (name) {
    case 'direct':
      return { ...base, port: backend.port, forwarders: [], procs: [] };
    case 'socat': {
      const socat = findProgram('socat');
      if (socat === undefined) return { skipped: 'socat is not installed (apt-get install socat haproxy)' };
      const port = await freePort();
      // The command, on loopback only, with the listen backlog every other path
      // has: socat's default of 5 drops SYNs (1 s retransmits) as soon as connections
      // arrive faster than it forks, which would measure the kernel queue, not socat.
      const listen = `TCP-LISTEN:${port},fork,reuseaddr,bind=${HOST},backlog=4096`;
      const proc = startProcess('socat', socat, [listen, `TCP:${HOST}:${backend.port}`]);
      await waitAccepting(port, proc);
      return { ...base, port, forwarders: [{ name: 'socat', pid: proc.pid }], procs: [proc] };
    }
    case 'haproxy':
    case 'haproxy-default': {
      const started = await startHaproxy(name, backend.port, name === 'haproxy' ? 'one' : 'default');
      if ('skipped' in started) return started;
      const { port, proc } = started;
      return { ...base, port, forwarders: [{ name: 'haproxy', pid: proc.pid }], procs: [proc] };
    }
    case 'node': {
      // The relay path's backend handler on a plain net.Server: the same bytes with no
      // relay and no library, so what one Node socket costs shows beside the relay's two.
      const { port, proc } = await startNodeBackend();
      return { ...base, port, forwarders: [], servicePid: proc.pid, backendPid: proc.pid, procs: [proc] };
    }
    case 'haproxy+node': {
      // haproxy in front of the `node` path's backend: the relay's first echo includes a
      // Node service's turn, haproxy's (to the C backend) a few µs of C. This path puts
      // the same Node handler behind haproxy, so the forwarders compare like for like.
      if (findProgram('haproxy') === undefined) return { skipped: 'haproxy is not installed (apt-get install socat haproxy)' };
      const { port: backendPort, proc: service } = await startNodeBackend();
      const started = await startHaproxy(name, backendPort, 'one');
      if ('skipped' in started) return started;
      const { port, proc } = started;
      return { ...base, port, forwarders: [{ name: 'haproxy', pid: proc.pid }], servicePid: service.pid, backendPid: service.pid, procs: [proc, service] };
    }
    case 'relay@baseline': {
      // The relay path exactly, from another checkout: relay and relayed backend both.
      const root = ctx.baseline;
      if (root === undefined) return { skipped: 'no --baseline checkout given' };
      const { relay, relayPort, workerPid, service, port } = await startRelayed(
        (relayPort) => startProcess('relayed-backend', ...node('relayed-backend.js', [HOST, String(relayPort)], root)),
        [],
        root,
      );
      return relayedPath(name, { relay, relayPort, workerPid, service, port });
    }
    case 'relay':
    case 'relay+prewarm':
    case 'relay+auto':
    case 'relay+tls': {
      const prewarm = name === 'relay+prewarm' ? ['--prewarm', String(ctx.prewarm)] : name === 'relay+auto' ? ['--prewarm', 'auto'] : [];
      let tls: { relay: string[]; service: string[] } = { relay: [], service: [] };
      if (name === 'relay+tls') {
        const pem = benchCertificate();
        if (pem === undefined) return { skipped: 'openssl is not installed (apt-get install openssl)' };
        tls = { relay: ['--tls-cert', pem.cert, '--tls-key', pem.key], service: ['--ca', pem.cert] };
      }
      const { relay, relayPort, workerPid, service, port } = await startRelayed(
        (relayPort) => startProcess('relayed-backend', ...node('relayed-backend.js', [HOST, String(relayPort), ...prewarm, ...tls.service])),
        tls.relay,
      );
      // Give the prewarmed pool time to fill before anything is measured.
      if (prewarm.length > 0) await sleep(500);
      return relayedPath(name, { relay, relayPort, workerPid, service, port });
    }
    case 'relay+names': {
      // The relay path through a names port: every connection is routed by an HTTP Host
      // header (the prelude the relay reads and passes on), the backend skips it.
      const namesPort = await freePort();
      const flags = ['--names-port', String(namesPort), '--names-domain', 'bench.test'];
      const started = await startRelayed((relayPort) => startProcess('relayed-backend', ...node('relayed-backend.js', [HOST, String(relayPort), '--name', 'echo'])), flags);
      if (started.port !== namesPort) throw new Error(`relay+names: the service got port ${started.port}, not the names port ${namesPort}`);
      const { relay, workerPid, service } = started;
      const prelude = 'GET / HTTP/1.1\r\nHost: echo.bench.test\r\n\r\n';
      return {
        name,
        port: namesPort,
        forwarders: [{ name: 'relay', pid: workerPid }],
        relayPid: workerPid,
        servicePid: service.pid,
        backendPid: service.pid,
        procs: [relay, service],
        relayedBackend: service,
        prelude,
      };
    }
    case 'relay+fleet': {
      const etcdProgram = findProgram('etcd');
      if (etcdProgram === undefined) return { skipped: 'etcd is not installed (apt-get install etcd-server)' };
      const etcd = await startEtcd(etcdProgram);
      const first = await freePort(100);
      const fleetFlags = ['--etcd', etcd.url, '--ports', `${first}-${first + 99}`, '--public-host', HOST];
      try {
        const { relay, workerPid, service, port } = await startRelayed((relayPort) => startProcess('relayed-backend', ...node('relayed-backend.js', [HOST, String(relayPort)])), fleetFlags);
        // Removed once the bench is over and etcd stopped (the procs module kills it at exit).
        process.once('exit', () => rmSync(etcd.dir, { recursive: true, force: true }));
        return { name, port, forwarders: [{ name: 'relay', pid: workerPid }], relayPid: workerPid, servicePid: service.pid, backendPid: service.pid, procs: [etcd.proc, relay, service] };
      } catch (err) {
        await stopProcess(etcd.proc);
        rmSync(etcd.dir, { recursive: true, force: true });
        throw err;
      }
    }
    case 'relay+expose': {
      const { relay, relayPort, workerPid, service, port } = await startRelayed((relayPort) =>
        startProcess('expose', path.join(ROOT, 'expose'), [HOST, String(relayPort), String(backend.port), '--log-level', 'warn']),
      );
      return {
        ...base,
        port,
        forwarders: [
          { name: 'relay', pid: workerPid },
          { name: 'expose', pid: service.pid },
        ],
        relayPid: workerPid,
        relayPort,
        servicePid: service.pid,
        procs: [relay, service],
      };
    }
  }
}

/** A path of the relay and the library's relayed backend (the backend is the service itself). */
function relayedPath(name: PathName, started: { relay: Proc; relayPort: number; workerPid: number; service: Proc; port: number }): BenchPath {
  const { relay, relayPort, workerPid, service, port } = started;
  return {
    name,
    port,
    forwarders: [{ name: 'relay', pid: workerPid }],
    relayPid: workerPid,
    relayPort,
    servicePid: service.pid,
    backendPid: service.pid,
    procs: [relay, service],
    relayedBackend: service,
  };
}

/** A self-signed certificate for localhost in bench-results/, made once per run; undefined without openssl. */
function benchCertificate(): { cert: string; key: string } | undefined {
  const openssl = findProgram('openssl');
  if (openssl === undefined) return undefined;
  const dir = path.join(ROOT, 'bench-results');
  const pem = { cert: path.join(dir, `tls-${process.pid}.crt`), key: path.join(dir, `tls-${process.pid}.key`) };
  if (!existsSync(pem.cert)) {
    mkdirSync(dir, { recursive: true });
    execFileSync(openssl, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', pem.key, '-out', pem.cert, '-days', '1', '-subj', '/CN=localhost'], {
      stdio: 'ignore',
    });
  }
  return pem;
}

/** The relayed service's client counts so far: how many started on a prewarmed connection. */
export async function clientCounts(p: BenchPath): Promise<{ clients: number; prewarmed: number } | undefined> {
  const proc = p.relayedBackend;
  if (proc === undefined) return undefined;
  const before = proc.stdout.length;
  process.kill(proc.pid, 'SIGUSR1');
  for (const deadline = Date.now() + 2000; Date.now() < deadline; await sleep(10)) {
    const match = proc.stdout
      .slice(before)
      .map((line) => /^clients (\d+) prewarmed (\d+)$/.exec(line))
      .find((m) => m !== null);
    if (match) return { clients: Number(match[1]), prewarmed: Number(match[2]) };
  }
  throw new Error(`${proc.name} did not report its client counts`);
}

export async function stopPath(p: BenchPath): Promise<void> {
  for (const proc of [...p.procs].reverse()) await stopProcess(proc);
}

/** The name of a process of this path that has died, if any. */
export function deadProcess(p: BenchPath): string | undefined {
  return p.procs.find((proc) => !proc.alive())?.name;
}
