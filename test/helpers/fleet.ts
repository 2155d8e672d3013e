import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server } from 'node:net';
import { listenViaRelay, type RelayTunnel } from '../../src/index.js';
import { deadline, freePort, randomData, readToEnd, sha256, within } from './net.js';
import { NO_ENV_SECRET, ROOT, start, withWorkers, workersOf, type Child } from './processes.js';

export interface Etcd extends Child {
  url: string;
}

/** A one-member etcd on free loopback ports with a temporary data directory, killed and removed after the test. */
export async function startEtcd(t: TestContext, certs?: string): Promise<Etcd> {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-etcd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [client, peer] = [await freePort(), await freePort()];
  const url = `${certs === undefined ? 'http' : 'https'}://127.0.0.1:${client}`;
  const tls =
    certs === undefined ? [] : ['--cert-file', path.join(certs, 'server.pem'), '--key-file', path.join(certs, 'server-key.pem'), '--client-cert-auth', '--trusted-ca-file', path.join(certs, 'ca.pem')];
  const peerUrl = `http://127.0.0.1:${peer}`;
  const etcd = start(t, 'etcd', [
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
    ...tls,
  ]);
  await etcd.waitFor('stderr', /ready to serve client requests/, 15_000);
  return { ...etcd, url };
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in dir. */
export function etcdCertificates(dir: string): void {
  const run = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('req', '-x509', ...key, '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=test etcd CA');
  for (const [name, extensions] of [
    // etcd's JSON gateway dials etcd itself with the server certificate, so it must allow client use too.
    ['server', ['subjectAltName=IP:127.0.0.1', 'extendedKeyUsage=serverAuth,clientAuth']],
    ['client', ['extendedKeyUsage=clientAuth']],
  ] as const) {
    writeFileSync(path.join(dir, `${name}.ext`), extensions.map((line) => `${line}\n`).join(''));
    run('req', ...key, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.ext`);
  }
}

/** Every key under prefix with its value, read through etcd's JSON gateway. */
export async function etcdKeys(etcd: Etcd, prefix = '/tcp-relay/'): Promise<Map<string, string>> {
  const b64 = (text: string): string => Buffer.from(text).toString('base64');
  const end = Buffer.from(prefix);
  end[end.length - 1]!++;
  const answer = (await (await fetch(`${etcd.url}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: b64(prefix), range_end: end.toString('base64') }) })).json()) as {
    kvs?: { key: string; value?: string }[];
  };
  const decode = (text: string | undefined): string => Buffer.from(text ?? '', 'base64').toString();
  return new Map((answer.kvs ?? []).map((kv) => [decode(kv.key), decode(kv.value)]));
}

/** Deletes every key under prefix, as an etcd that lost its data would have none of them (the leases stay). */
export async function etcdWipe(etcd: Etcd, prefix = '/tcp-relay/'): Promise<void> {
  const end = Buffer.from(prefix);
  end[end.length - 1]!++;
  const answer = await fetch(`${etcd.url}/v3/kv/deleterange`, { method: 'POST', body: JSON.stringify({ key: Buffer.from(prefix).toString('base64'), range_end: end.toString('base64') }) });
  assert.equal(answer.status, 200, 'etcd deleted the prefix');
}

/** What the nodes of one fleet share: the control port (the same on every node), the public range and etcd. */
export interface FleetPlan {
  etcd: Etcd;
  port: number;
  range: { first: number; last: number };
}

/** A fresh etcd (over TLS with client certificates when `certs` has etcdCertificates), a control port and a range. */
export async function planFleet(t: TestContext, size = 150, certs?: string): Promise<FleetPlan> {
  return { etcd: await startEtcd(t, certs), port: await freePort(), range: await belowEphemeral(size) };
}

/**
 * A public range below Linux's ephemeral ports (32768 and up), free on 127.0.0.1-3: a
 * fleet node that cannot listen on a key's port (a client socket of some test holds
 * it) does not serve that key, and these tests expect every node to serve every key.
 */
async function belowEphemeral(size: number): Promise<{ first: number; last: number }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    // 26000-32699: apart from portBlock's blocks (test/helpers/net.ts).
    const first = 26_000 + Math.floor(Math.random() * (67 - Math.ceil(size / 100) + 1)) * 100;
    if ((await Promise.all([1, 2, 3].map((n) => canListen(`127.0.0.${n}`, first)))).every(Boolean)) return { first, last: first + size - 1 };
  }
  throw new Error('no free port block below the ephemeral range in 20 tries');
}

function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, host, () => probe.close(() => resolve(true)));
  });
}

export interface FleetNode extends Child {
  /** 127.0.0.N: where this node listens, on every port. */
  address: string;
}

/** Node N of the fleet: ./relay on 127.0.0.N with the fleet's ports, once it listens. */
export async function startNode(t: TestContext, plan: FleetPlan, n: number, extra: string[] = []): Promise<FleetNode> {
  const address = `127.0.0.${n}`;
  const args = [String(plan.port), '--bind', address, '--ports', `${plan.range.first}-${plan.range.last}`, '--public-host', 'relay.test', '--etcd', plan.etcd.url, '--log-format', 'json', ...extra];
  const node = start(t, path.join(ROOT, 'relay'), withWorkers(args), NO_ENV_SECRET);
  await node.waitFor('stderr', /"msg":"relay listening"/, 20_000);
  // With several workers (TEST_RELAY_WORKERS) the first one listening is not all: the master says when every one is.
  if (workersOf(args) > 1) await node.waitFor('stderr', /master running/, 30_000);
  return { ...node, address };
}

/** Starts nodes 1..count and waits until each has seen all of them in etcd. */
export async function startFleet(t: TestContext, plan: FleetPlan, count = 3): Promise<FleetNode[]> {
  const nodes = await Promise.all(Array.from({ length: count }, (_, i) => startNode(t, plan, i + 1)));
  await Promise.all(nodes.map((node) => node.waitFor('stderr', new RegExp(`"nodes":${count},"msg":"fleet: nodes changed"`), 10_000)));
  return nodes;
}

/** Where the public clients of these tests come from, so the address a service sees is provably theirs. */
export const CLIENT_ADDRESS = '127.0.0.9';

/** A service that says which address its client has, then echoes (half-close included). */
export function addressEcho(t: TestContext): Server {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    socket.write(`${socket.remoteAddress}\n`);
    socket.pipe(socket);
  });
  t.after(() => server.close());
  return server;
}

/** The service registered through `hosts` (a RELAYHOST list), once it has its public address. */
export async function service(t: TestContext, plan: FleetPlan, hosts: string, server = addressEcho(t)): Promise<{ tunnel: RelayTunnel; port: number }> {
  const tunnel = listenViaRelay(server, { host: hosts, port: plan.port });
  t.after(() => tunnel.close({ leave: true }));
  const address = await within(tunnel.established(), 15_000, `a registration through ${hosts}`);
  assert.equal(address.host, 'relay.test');
  return { tunnel, port: address.port };
}

/** Random bytes through node `address` to public port `port`: the echo must match by hash, after the client's own address. */
export async function exchange(address: string, port: number, size = 32 * 1024): Promise<void> {
  const socket = connect({ host: address, port, localAddress: CLIENT_ADDRESS, allowHalfOpen: true });
  socket.on('error', () => {});
  try {
    await once(socket, 'connect', { signal: deadline(5000) });
    const data = randomData(size);
    socket.end(data);
    const answer = await readToEnd(socket, 10_000);
    const line = `${CLIENT_ADDRESS}\n`;
    assert.equal(answer.subarray(0, line.length).toString(), line, `the service saw the client's own address through ${address}`);
    assert.equal(sha256(answer.subarray(line.length)), sha256(data), `every byte echoed through ${address}:${port}`);
  } finally {
    socket.destroy();
  }
}

export async function everyNodeServes(nodes: FleetNode[], port: number): Promise<void> {
  for (const node of nodes) await exchange(node.address, port);
}
