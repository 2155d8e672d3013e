import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { TestContext } from 'node:test';

/**
 * A service's broken data path, made on purpose: the service reaches the relay's
 * control port through `controlPort`, which rewrites `data=` in every OK so that its
 * dial-backs go to the gate instead. The gate forwards to the relay's data port while
 * open, and resets every connection while shut (a firewall that rejects new outbound
 * connections), and the control connection stays healthy all along.
 */
export async function dataGate(t: TestContext, relayControlPort: number, relayDataPort: number): Promise<{ controlPort: number; shut: () => void; open: () => void }> {
  const sockets = new Set<Socket>();
  const track = (socket: Socket): Socket => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    return socket;
  };
  let shut = false;
  const gate = createServer({ allowHalfOpen: true }, (inbound) => {
    track(inbound);
    if (shut) return void inbound.resetAndDestroy();
    const outbound = track(connect({ port: relayDataPort, host: '127.0.0.1', allowHalfOpen: true }));
    splicePair(inbound, outbound);
  });
  const gatePort = await listening(gate);
  const control = createServer((service) => {
    track(service);
    const relay = track(connect(relayControlPort, '127.0.0.1'));
    service.on('close', () => relay.destroy());
    relay.on('close', () => service.destroy());
    service.pipe(relay);
    let head = '';
    const rewrite = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      const lf = head.indexOf('\n');
      if (lf < 0) return;
      relay.off('data', rewrite);
      service.write(Buffer.from(head.slice(0, lf).replace(/ data=\d+/, ` data=${gatePort}`) + head.slice(lf), 'latin1'));
      relay.pipe(service);
    };
    relay.on('data', rewrite);
  });
  const controlPort = await listening(control);
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    gate.close();
    control.close();
  });
  return { controlPort, shut: () => (shut = true), open: () => (shut = false) };
}

function splicePair(a: Socket, b: Socket): void {
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
  a.pipe(b).pipe(a);
}

async function listening(server: ReturnType<typeof createServer>): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}
