import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dial, echoThrough, freePort, portBlock, portsFlag, readAtLeast, readToEnd, eventually } from '../helpers/net.js';
import { start, startRelay, startService } from '../helpers/processes.js';
import { connectionRefused } from '../helpers/observe.js';
import { requireTools } from '../helpers/tools.js';
import { certFiles } from '../helpers/tls.js';

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'relay-ops-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

for (const version of ['v1', 'v2'] as const) {
  test(`real client address: ./expose --proxy-protocol ${version} lets nginx see the public client's address and port`, async (t) => {
    if (!requireTools(t, 'nginx')) return;
    const dir = await scratch(t);
    const nginxPort = await freePort();
    await writeFile(
      path.join(dir, 'nginx.conf'),
      `daemon off;\nmaster_process off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents { worker_connections 64; }\n` +
        `http {\n access_log off;\n client_body_temp_path ${dir};\n proxy_temp_path ${dir};\n fastcgi_temp_path ${dir};\n uwsgi_temp_path ${dir};\n scgi_temp_path ${dir};\n` +
        ` server {\n  listen 127.0.0.1:${nginxPort} proxy_protocol;\n  location / { return 200 "client=$proxy_protocol_addr:$proxy_protocol_port server=$proxy_protocol_server_port\\n"; }\n }\n}\n`,
    );
    const nginx = start(t, 'nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')]);
    // nginx prints nothing when ready: wait until its port accepts.
    await eventually(async () => !(await connectionRefused(nginxPort)), 5000, 'nginx to accept connections');
    void nginx;
    const relay = await startRelay(t, portsFlag());
    const expose = await startService(t, 'expose', ['127.0.0.1', String(relay.port), `127.0.0.1:${nginxPort}`, '--proxy-protocol', version]);
    const client = await dial(t, expose.publicPort);
    const clientPort = client.localPort;
    client.end('GET / HTTP/1.0\r\nHost: test\r\n\r\n');
    const response = (await readToEnd(client)).toString();
    assert.match(response, /^HTTP\/1\.1 200/);
    assert.match(response, new RegExp(`client=127\\.0\\.0\\.1:${clientPort} server=${expose.publicPort}\\n`));
  });
}

test('metrics: /metrics figures move as a tunnel opens, carries bytes and closes; /healthz answers', async (t) => {
  const relay = await startRelay(t, [...portsFlag(), '--metrics', '127.0.0.1:0']);
  const metricsUrl = (await relay.waitFor('stderr', /"metrics":"(http:[^"]+)"/))[1]!;
  const scrape = async (): Promise<Map<string, number>> => {
    const text = await (await fetch(metricsUrl)).text();
    return new Map(
      text
        .split('\n')
        .filter((line) => line && !line.startsWith('#'))
        .map((line) => [line.slice(0, line.lastIndexOf(' ')), Number(line.slice(line.lastIndexOf(' ') + 1))]),
    );
  };
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  const before = await scrape();
  assert.equal(before.get('relay_services'), 1);
  assert.equal(before.get('relay_tunnels_open'), 0);

  const client = await dial(t, echo.publicPort);
  client.write(Buffer.alloc(1000, 1));
  await readAtLeast(client, 1000);
  const during = await scrape();
  assert.equal(during.get('relay_tunnels_open'), 1);
  assert.equal(during.get('relay_client_bytes_received_total'), 1000);
  assert.equal(during.get('relay_client_bytes_sent_total'), 1000);
  assert.equal(during.get('relay_dialback_seconds_count'), 1);
  assert.ok((during.get('process_resident_memory_bytes') ?? 0) > 0);

  client.end();
  await readToEnd(client);
  await relay.waitFor('stderr', /"msg":"tunnel closed"/);
  const after = await scrape();
  assert.equal(after.get('relay_tunnels_open'), 0);
  assert.equal(after.get('relay_tunnels_opened_total'), 1);

  const health = await fetch(metricsUrl.replace('/metrics', '/healthz'));
  assert.equal(health.status, 200);
});

test('access log: one JSON line per tunnel with port, client, service, bytes each way, duration, who closed and why', async (t) => {
  const relay = await startRelay(t, portsFlag());
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  const client = await dial(t, echo.publicPort);
  const clientPort = client.localPort;
  await echoThrough(client, Buffer.alloc(12345, 2));
  const line = (await relay.waitFor('stderr', /^\{.*"msg":"tunnel closed".*\}$/))[0];
  const record = JSON.parse(line) as Record<string, unknown>;
  assert.equal(record['publicPort'], echo.publicPort);
  assert.equal(record['client'], `127.0.0.1:${clientPort}`);
  assert.equal(typeof record['service'], 'string');
  assert.equal(record['bytesFromClient'], 12345);
  assert.equal(record['bytesToClient'], 12345);
  assert.equal(typeof record['durationMs'], 'number');
  assert.equal(record['closedBy'], 'client');
  assert.equal(record['outcome'], 'end');
  assert.equal(relay.stderr.filter((l) => l.includes('"tunnel closed"')).length, 1);
});

test('TLS: a relay with --tls-cert serves echoserver --ca over TLS, and plaintext to its control port gets no protocol reply', async (t) => {
  if (!requireTools(t, 'openssl')) return;
  const { cert, key } = await certFiles(t);
  const relay = await startRelay(t, [...portsFlag(), '--tls-cert', cert, '--tls-key', key]);
  const echo = await startService(t, 'echoserver', ['localhost', String(relay.port), '--ca', cert]);
  const client = await dial(t, echo.publicPort);
  const data = Buffer.from('over TLS to the relay, plain on the public port');
  assert.deepEqual(await echoThrough(client, data), data);

  const plain = await dial(t, relay.port);
  plain.end('HELLO 1\n');
  const reply = (await readToEnd(plain, 5000)).toString('latin1');
  assert.doesNotMatch(reply, /OK|ERR/);
  await relay.waitFor('stderr', /TLS handshake failed/);
});

test('configuration: RELAY_* environment variables and --config apply, and the command line wins over both', async (t) => {
  const dir = await scratch(t);
  const block = portBlock();
  const config = path.join(dir, 'relay.json');
  await writeFile(config, JSON.stringify({ 'public-host': 'from-config.example', ports: `${block.first}-${block.last}` }));
  const relay = await startRelay(t, ['--config', config], { RELAY_PUBLIC_HOST: 'from-env.example' });
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  assert.equal(echo.publicHost, 'from-env.example');
  assert.ok(echo.publicPort >= block.first && echo.publicPort <= block.last, 'ports came from the config file');

  const relay2 = await startRelay(t, ['--config', config, '--public-host', 'from-flag.example'], { RELAY_PUBLIC_HOST: 'from-env.example' });
  const echo2 = await startService(t, 'echoserver', ['127.0.0.1', String(relay2.port)]);
  assert.equal(echo2.publicHost, 'from-flag.example');
});
