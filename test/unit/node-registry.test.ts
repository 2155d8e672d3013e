import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { EtcdClient, EtcdKv } from '../../src/fleet/etcd-client.js';
import { NodeRegistry } from '../../src/fleet/node-registry.js';

/** Just the calls the registry makes, over an in-memory key space: the registry alone, without an etcd. */
function fakeEtcd(kvs: Map<string, string>): EtcdClient {
  const etcd = {
    grant: () => Promise.resolve('1'),
    keepAlive: () => Promise.resolve(10),
    put: (key: string, value: string) => Promise.resolve(void kvs.set(key, value)),
    range: (prefix: string): Promise<EtcdKv[]> => Promise.resolve([...kvs].filter(([key]) => key.startsWith(prefix)).map(([key, value]) => ({ key, value, createRevision: 1, lease: '1' }))),
  };
  return etcd as unknown as EtcdClient;
}

test('a node key in etcd that holds no host:port is left out of the node list, with one warning naming the key and not the whole value', async () => {
  const logged: Record<string, unknown>[] = [];
  const log = pino(new Writable({ write: (chunk: Buffer, _e, done) => (logged.push(JSON.parse(chunk.toString()) as Record<string, unknown>), done()) }));
  const kvs = new Map([
    ['fleet/nodes/b', '[::1]:7001'],
    ['fleet/nodes/bad', `not an address ${'x'.repeat(1000)}`],
    ['fleet/nodes/spaced', '127.0.0.1:7002 OK'],
  ]);
  const registry = new NodeRegistry(fakeEtcd(kvs), 'fleet/', 'a', { host: '127.0.0.1', port: 7000 }, log);
  assert.deepEqual(await registry.sync(), { registered: true, changed: true });
  assert.deepEqual(registry.list(), ['127.0.0.1:7000', '[::1]:7001']);
  await registry.sync();
  const warnings = logged.filter((line) => line['level'] === 40);
  assert.deepEqual(
    warnings.map((line) => line['key']),
    ['fleet/nodes/bad', 'fleet/nodes/spaced'],
    'one warning per bad key, not one per read',
  );
  for (const warning of warnings) assert.ok(JSON.stringify(warning).length < 400, 'a long value is not logged whole');
});

test("a node of several workers: each worker writes the node's one key on every sync, under its own lease, so it outlives the writer", async () => {
  const leases = new Map<string, string>();
  const kvs = new Map<string, string>();
  const puts: string[] = [];
  const etcd = (lease: string): EtcdClient =>
    ({
      grant: () => Promise.resolve(lease),
      keepAlive: () => Promise.resolve(10),
      put: (key: string, value: string, on: string) => Promise.resolve(void (kvs.set(key, value), leases.set(key, on), puts.push(on))),
      range: (prefix: string): Promise<EtcdKv[]> =>
        Promise.resolve([...kvs].filter(([key]) => key.startsWith(prefix)).map(([key, value]) => ({ key, value, createRevision: 1, lease: leases.get(key) ?? '' }))),
    }) as unknown as EtcdClient;
  const log = pino({ level: 'silent' });
  const workers = ['10', '20'].map((lease) => new NodeRegistry(etcd(lease), 'fleet/', 'a', { host: '127.0.0.1', port: 7000 }, log, true));
  for (const worker of workers) await worker.sync();
  assert.equal(leases.get('fleet/nodes/a'), '20');
  await workers[0]!.sync();
  assert.equal(leases.get('fleet/nodes/a'), '10', 'written again by a worker that registered before');
  assert.deepEqual(workers[1]!.list(), ['127.0.0.1:7000'], 'one node in the list, whatever the worker count');
  const single = new NodeRegistry(etcd('30'), 'fleet/', 'b', { host: '127.0.0.1', port: 7001 }, log);
  await single.sync();
  await single.sync();
  assert.equal(puts.filter((lease) => lease === '30').length, 1, 'a node of one worker writes its key only when it registers');
});
