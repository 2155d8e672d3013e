import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { deadline, eventually, freePort, howItEnds, portsFlag, readToEnd, within } from '../helpers/net.js';
import { connectionRefused } from '../helpers/observe.js';
import { start, startRelay, startService, type Child } from '../helpers/processes.js';
import { requireTools, toolPath } from '../helpers/tools.js';

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'relay-lb-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** nginx that reads a PROXY header and answers with the client address and port it gave. */
async function nginxReportingClient(t: TestContext, dir: string): Promise<number> {
  const port = await freePort();
  await writeFile(
    path.join(dir, 'nginx.conf'),
    `daemon off;\nmaster_process off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents { worker_connections 64; }\n` +
      `http {\n access_log off;\n client_body_temp_path ${dir};\n proxy_temp_path ${dir};\n fastcgi_temp_path ${dir};\n uwsgi_temp_path ${dir};\n scgi_temp_path ${dir};\n` +
      ` server {\n  listen 127.0.0.1:${port} proxy_protocol;\n  location / { return 200 "client=$proxy_protocol_addr:$proxy_protocol_port\\n"; }\n }\n}\n`,
  );
  start(t, 'nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')]);
  await eventually(async () => !(await connectionRefused(port)), 5000, 'nginx to accept connections');
  return port;
}

/** haproxy on a port of its own, in front of `target`, sending a PROXY header of `send` to it. */
async function haproxyInFront(t: TestContext, dir: string, target: number, send: 'send-proxy' | 'send-proxy-v2'): Promise<number> {
  const port = await freePort();
  const config = path.join(dir, 'haproxy.cfg');
  const lines = ['global', '    maxconn 200', 'defaults', '    mode tcp', '    timeout connect 5s', '    timeout client 30s', '    timeout server 30s'];
  lines.push('frontend public', `    bind 127.0.0.1:${port}`, '    default_backend relay', 'backend relay', `    server relay 127.0.0.1:${target} ${send}`);
  await writeFile(config, `${lines.join('\n')}\n`);
  start(t, toolPath('haproxy'), ['-db', '-f', config]);
  await eventually(async () => !(await connectionRefused(port)), 5000, 'haproxy to accept connections');
  return port;
}

/** A client from source address `from`, connected to `port`. */
async function clientFrom(t: TestContext, port: number, from: string): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', localAddress: from, allowHalfOpen: true });
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  await once(socket, 'connect', { signal: deadline(5000) });
  return socket;
}

/** Reads until the text so far matches; the socket stays open. */
async function readUntil(socket: Socket, pattern: RegExp, ms = 5000): Promise<string> {
  let text = '';
  return within(
    new Promise<string>((resolve, reject) => {
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
        if (pattern.test(text)) resolve(text);
      });
      socket.once('close', () => reject(new Error(`closed after ${JSON.stringify(text)}`)));
    }),
    ms,
    `a reply matching ${pattern}`,
  );
}

const refusalLogged = (relay: Child, reason: string, client: string): Promise<RegExpMatchArray> =>
  relay.waitFor('stderr', new RegExp(`"reason":"${reason}","client":"${client.replace(/\./g, '\\.')}"`), 5000);

for (const [send, version] of [
  ['send-proxy', 'v1'],
  ['send-proxy-v2', 'v2'],
] as const) {
  test(`behind haproxy ${send}: the client's own address reaches limits, lists and the service's PROXY ${version} header`, async (t) => {
    if (!requireTools(t, 'haproxy', 'nginx')) return;
    const dir = await scratch(t);
    const nginx = await nginxReportingClient(t, dir);
    const relay = await startRelay(t, [...portsFlag(), '--public-proxy-from', '127.0.0.1', '--max-clients-per-ip', '2', '--deny', '127.0.0.7']);
    const expose = await startService(t, 'expose', ['127.0.0.1', String(relay.port), `127.0.0.1:${nginx}`, '--proxy-protocol', version]);
    const balancer = await haproxyInFront(t, dir, expose.publicPort, send);

    // Two clients of 127.0.0.5 stay open (HTTP/1.1 keep-alive): each saw its own address.
    const held: Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const client = await clientFrom(t, balancer, '127.0.0.5');
      client.write('GET / HTTP/1.1\r\nHost: test\r\n\r\n');
      assert.match(await readUntil(client, /client=\S+\n/), new RegExp(`client=127\\.0\\.0\\.5:${client.localPort}\\n`));
      held.push(client);
    }
    // A third from 127.0.0.5 is over --max-clients-per-ip 2, though the relay saw every one come from haproxy.
    const third = await clientFrom(t, balancer, '127.0.0.5');
    third.end('GET / HTTP/1.0\r\n\r\n');
    await refusalLogged(relay, 'clients-per-ip', '127.0.0.5');
    assert.doesNotMatch((await readToEnd(third).catch(() => Buffer.alloc(0))).toString(), /client=/);
    // Another address behind the same balancer is not held to 127.0.0.5's count.
    const other = await clientFrom(t, balancer, '127.0.0.6');
    const otherPort = other.localPort;
    other.end('GET / HTTP/1.0\r\n\r\n');
    assert.match((await readToEnd(other)).toString(), new RegExp(`client=127\\.0\\.0\\.6:${otherPort}\\n`));
    // --deny applies to the address the header gives.
    const denied = await clientFrom(t, balancer, '127.0.0.7');
    denied.end('GET / HTTP/1.0\r\n\r\n');
    await refusalLogged(relay, 'ip-denied', '127.0.0.7');
    // The balancer's address without a header is reset: it is trusted only to name its clients.
    const direct = await clientFrom(t, expose.publicPort, '127.0.0.1');
    direct.write('GET / HTTP/1.0\r\n\r\n');
    assert.equal(await howItEnds(direct), 'reset');
    await refusalLogged(relay, 'proxy-header', '127.0.0.1');
    // An unlisted address is served as ever: its own address, its bytes as sent.
    const unlisted = await clientFrom(t, expose.publicPort, '127.0.0.8');
    const unlistedPort = unlisted.localPort;
    unlisted.end('GET / HTTP/1.0\r\n\r\n');
    assert.match((await readToEnd(unlisted)).toString(), new RegExp(`client=127\\.0\\.0\\.8:${unlistedPort}\\n`));
    for (const client of held) client.destroy();
  });
}

test('behind haproxy: a client held for a departed service keeps its own address across an upgrade (SIGUSR2)', async (t) => {
  if (!requireTools(t, 'haproxy', 'nginx')) return;
  const dir = await scratch(t);
  const nginx = await nginxReportingClient(t, dir);
  const resumeFile = path.join(dir, 'expose.key');
  // The balancer's own address is denied as a client: a successor that lost the header's address would reset the client.
  const relay = await startRelay(t, [...portsFlag(), '--public-proxy-from', '127.0.0.1', '--deny', '127.0.0.1', '--hold-timeout', '30', '--metrics', '127.0.0.1:0']);
  const metricsUrl = (await relay.waitFor('stderr', /"metrics":"(http:[^"]+)"/))[1]!;
  const exposeArgs = ['127.0.0.1', String(relay.port), `127.0.0.1:${nginx}`, '--proxy-protocol', 'v1', '--resume-file', resumeFile];
  const first = await startService(t, 'expose', exposeArgs);
  const balancer = await haproxyInFront(t, dir, first.publicPort, 'send-proxy-v2');
  const from = relay.stderr.length;
  first.signal('SIGKILL');
  await relay.waitFor('stderr', /"msg":"service left"/, 5000, from);

  const client = await clientFrom(t, balancer, '127.0.0.5');
  const clientPort = client.localPort;
  client.end('GET / HTTP/1.0\r\n\r\n');
  await eventually(async () => /^relay_clients_held 1$/m.test(await (await fetch(metricsUrl)).text()), 5000, 'the old worker to hold the client');
  const upgraded = relay.stderr.length;
  relay.signal('SIGUSR2');
  await relay.waitFor('stderr', /"msg":"upgrade: new worker serving/, 20_000, upgraded);
  const second = await startService(t, 'expose', exposeArgs);
  assert.equal(second.publicPort, first.publicPort);
  assert.match((await readToEnd(client)).toString(), new RegExp(`client=127\\.0\\.0\\.5:${clientPort}\\n`));
});
