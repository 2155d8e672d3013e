import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { Relay, listenViaRelay, type RelayOptions, type RelayRegistration, type ConnectionTarget, type RelayClientOptions } from '../../src/index.js';
import { portBlock, within } from './net.js';

/** An in-process relay on a free control port and a fresh public port block, shut down after the test. */
export async function inProcessRelay(t: TestContext, options: Partial<RelayOptions> = {}): Promise<Relay> {
  const relay = new Relay({ port: 0, ports: portBlock(), ...options });
  await relay.start();
  t.after(() => relay.shutdown(0));
  return relay;
}

/** A tunnel registered with the relay; closed after the test. */
export async function relayed(t: TestContext, relay: Relay, target: ConnectionTarget, options: Partial<RelayClientOptions> = {}): Promise<{ tunnel: RelayRegistration; port: number }> {
  const tunnel = listenViaRelay(target, { host: '127.0.0.1', port: relay.controlPort, ...options });
  t.after(() => tunnel.close());
  const address = await within(tunnel.established(), 5000, 'registration');
  return { tunnel, port: address.port };
}

/**
 * A TCP proxy in front of the relay's control port only (data connections go to the
 * relay directly), so a test can cut a service's control connection alone.
 */
export async function controlProxy(t: TestContext, target: number): Promise<{ port: number; cut: () => void }> {
  const sockets = new Set<Socket>();
  const proxy = createServer((inbound) => {
    const outbound = connect(target, '127.0.0.1');
    sockets.add(inbound).add(outbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
    inbound.pipe(outbound).pipe(inbound);
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    proxy.close();
  });
  return {
    port: (proxy.address() as AddressInfo).port,
    cut: () => {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
  };
}
