import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { listenViaRelay } from '../../src/index.js';
import { addressEcho, etcdKeys, planFleet, startNode } from '../helpers/fleet.js';
import { eventually, freePort, readAtLeast, within } from '../helpers/net.js';
import { Peer, randomHex } from '../helpers/protocol.js';
import { requireTools } from '../helpers/tools.js';

// A name on the names ports agreed fleet-wide in etcd, as a port is (docs/protocol.md §16, §18).

const DOMAIN = 'names.test';

/** An HTTP request naming `host` through node `address`'s names port: the echo service sends back the client's address, then the request. */
async function reachable(address: string, namesPort: number, host: string): Promise<boolean> {
  const client = connect(namesPort, address);
  client.on('error', () => {});
  const request = `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
  client.write(request);
  try {
    const got = (await readAtLeast(client, request.length + 2, 3000)).toString();
    return got.endsWith(request);
  } catch {
    return false;
  } finally {
    client.destroy();
  }
}

test('names in a fleet: a service registered with both nodes gets the same name at each, served by both; another key is refused the name at either node, even one where the holder never registered', async (t) => {
  if (!requireTools(t, 'etcd')) return;
  const plan = await planFleet(t, 10);
  const namesPort = await freePort();
  const extra = ['--names-port', String(namesPort), '--names-domain', DOMAIN];
  const nodes = [await startNode(t, plan, 1, extra), await startNode(t, plan, 2, extra)];
  await Promise.all(nodes.map((node) => node.waitFor('stderr', /"nodes":2,"msg":"fleet: nodes changed"/, 10_000)));

  const tunnel = listenViaRelay(addressEcho(t), { host: '127.0.0.1,127.0.0.2', port: plan.port, name: 'shop' });
  t.after(() => tunnel.close({ leave: true }));
  const address = await within(tunnel.established(), 15_000, 'the named registration');
  assert.deepEqual([address.host, address.port], [`shop.${DOMAIN}`, namesPort]);
  for (const node of nodes) await eventually(() => reachable(node.address, namesPort, `shop.${DOMAIN}`), 10_000, `shop served by ${node.address}`);

  const keys = await etcdKeys(plan.etcd);
  const hash = keys.get(`/tcp-relay/names/hosts/shop.${DOMAIN}`);
  assert.match(hash ?? '', /^[0-9a-f]{64}$/, 'the name is assigned in etcd');
  assert.equal(keys.get(`/tcp-relay/names/keys/${hash}`), `shop.${DOMAIN}`);
  assert.equal(keys.get(`/tcp-relay/keys/${hash}`), undefined, 'the name takes no port of the range');
  assert.equal([...keys.keys()].filter((key) => key.startsWith('/tcp-relay/ports/')).length, 0);

  for (const node of nodes) {
    const rival = await Peer.open(t, plan.port, { host: node.address });
    rival.send(`HELLO 1 host=relay.test resume=${randomHex(32)} feat=name name=shop`);
    assert.equal(await rival.nextLine(), `ERR limit name shop.${DOMAIN} is taken by another service`);
  }

  // A key registered with node 1 only (no fleet feature): node 2 knows of its name from etcd alone.
  const solo = await Peer.open(t, plan.port, { host: nodes[0]!.address, autoPong: true });
  solo.send(`HELLO 1 host=relay.test resume=${randomHex(32)} feat=name name=solo`);
  assert.match(await solo.nextLine(), new RegExp(`^OK solo\\.${DOMAIN}:${namesPort} `));
  const stranger = await Peer.open(t, plan.port, { host: nodes[1]!.address });
  stranger.send(`HELLO 1 host=relay.test resume=${randomHex(32)} feat=name name=solo`);
  assert.equal(await stranger.nextLine(), `ERR limit name solo.${DOMAIN} is taken by another service`);
  await nodes[1]!.waitFor('stderr', /name solo\.names\.test is taken by another service/);
});
