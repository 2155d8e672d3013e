import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { dial, echoThrough, freeBlock, freePort, listenLocal, portsFlag, readToEnd, within } from '../helpers/net.js';
import { NO_ENV_SECRET, ROOT, start, startRelay, startService } from '../helpers/processes.js';

// Each program reads RELAY_<FLAG> for exactly the flags it has; a relay and its services
// can then share one environment (one container, one unit file) without stopping each
// other over a variable that belongs to the other, or to nobody.

const STRANGERS = { RELAY_DIR: '/opt/x', RELAY_TENANT: 'alice', RELAY_PORT: '1', RELAY_RELAYHOST: 'nowhere', RELAY_HOME: '/tmp', RELAY_HELP: '1' };

test('environment: relay, echoserver and expose share one environment; each takes its own RELAY_* variables and ignores the rest', async (t) => {
  const block = await freeBlock();
  const dataPort = await freePort();
  const wanted = block.first + 7;
  const env = {
    ...STRANGERS,
    RELAY_SECRET: 'shared secret',
    RELAY_DATA_PORT: String(dataPort), // the relay's only
    RELAY_PORTS: `${block.first}-${block.last}`, // the relay's only
    RELAY_PUBLIC_PORT: String(wanted), // the services' only
    RELAY_PREWARM: '2', // the services' only
    RELAY_LOG_LEVEL: 'debug', // everyone's
  };
  const relay = await startRelay(t, [], env);
  assert.equal(relay.dataPort, dataPort, 'RELAY_DATA_PORT applies to the relay');
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], env);
  assert.equal(echo.publicPort, wanted, 'RELAY_PUBLIC_PORT applies to echoserver, and RELAY_SECRET let it register');
  const client = await dial(t, echo.publicPort);
  assert.equal((await echoThrough(client, Buffer.from('shared environment'))).toString(), 'shared environment');

  const { port: target } = await listenLocal(t, (socket) => socket.end('from the target\n'));
  const expose = await startService(t, 'expose', ['127.0.0.1', String(relay.port), String(target)], env);
  assert.notEqual(expose.publicPort, wanted, 'the wanted port was taken by echoserver');
  assert.ok(expose.publicPort >= block.first && expose.publicPort <= block.last);
  const other = await dial(t, expose.publicPort);
  other.end();
  assert.equal((await readToEnd(other)).toString(), 'from the target\n');
});

test('environment: a variable is read as its flag, checked like one, by the program that has the flag only', async (t) => {
  const env = { ...NO_ENV_SECRET, RELAY_PROXY_PROTOCOL: 'v9' };
  const relay = await startRelay(t, portsFlag(), env);
  await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)], env);
  const expose = start(t, path.join(ROOT, 'expose'), ['127.0.0.1', String(relay.port), '80'], env);
  assert.equal((await within(expose.exited, 10_000, 'expose to exit')).code, 2);
  assert.match(expose.stderr.join('\n'), /Invalid values:.*proxy-protocol.*"v9"/s);
});

test('environment: the command line wins over a RELAY_* variable', async (t) => {
  const [fromEnv, fromFlag] = [await freePort(), await freePort()];
  const relay = await startRelay(t, [...portsFlag(), `--data-port=${fromFlag}`], { ...NO_ENV_SECRET, RELAY_DATA_PORT: String(fromEnv) });
  assert.equal(relay.dataPort, fromFlag);
});
