import { connect, type Socket } from 'node:net';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { KEEPALIVE_DELAY_MS } from '../config/defaults.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { resetSocket, splice } from '../net/splice.js';
import { splitHostPort } from '../protocol/addresses.js';
import { proxyHeader } from '../protocol/proxy-header.js';
import { relayInfo } from '../client/dial-back.js';
import { portArg, usageFailure } from './common.js';
import { argvWithEnv } from './env-options.js';
import { runService, SERVICE_POSITIONALS, withServiceOptions } from './service-runner.js';

// TARGET after the service's own positionals, so that --help lists them in the order of the usage line.
const parser = withServiceOptions(
  yargs(hideBin(process.argv))
    .scriptName('expose')
    .usage('$0 RELAYHOST RELAYPORT TARGET [options]\n\nMakes an existing TCP server (TARGET: PORT or HOST:PORT) reachable through the relay.')
    .command('$0 <relayhost> <relayport> <target>', false)
    .example('$0 localhost 8080 3000', 'expose localhost:3000; prints "established relay address: localhost:8081"')
    .example('$0 relay.example.com 8080 192.168.1.20:22', 'expose an ssh server of the private network')
    .example('$0 localhost 8080 80 --proxy-protocol v2', 'nginx on port 80 (listen 80 proxy_protocol) logs the real client address')
    .example('$0 localhost 8080 22 --allow 192.0.2.0/24,2001:db8::/32', 'ssh reachable only from those ranges (the relay resets everyone else)')
    .fail(usageFailure('expose', 'RELAYHOST RELAYPORT TARGET')),
)
  .positional('target', { type: 'string', describe: 'The server to expose: PORT (on localhost) or HOST:PORT' })
  .option('proxy-protocol', { choices: ['v1', 'v2'] as const, describe: "Send TARGET a PROXY protocol header with the public client's address" });
const args = await parser.parseAsync(argvWithEnv(parser, [...SERVICE_POSITIONALS, 'target']));

function parseTarget(text: string | undefined): { host: string; port: number } {
  if (text === undefined || text === '') throw new UsageError('TARGET is missing');
  if (/^\d+$/.test(text)) return { host: 'localhost', port: portArg('TARGET', text) };
  const target = splitHostPort(text);
  if (target === undefined) throw new UsageError(`TARGET must be PORT or HOST:PORT, got "${text}"`);
  return target;
}

let target: { host: string; port: number };
try {
  target = parseTarget(args.target);
} catch (err) {
  usageFailure('expose', 'RELAYHOST RELAYPORT TARGET')(undefined, err as Error);
}

const TARGET_CONNECT_TIMEOUT_MS = 10_000;

function forward(client: Socket, log: Logger): void {
  const backend = connect({ ...target, allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_DELAY_MS });
  backend.on('error', () => {});
  // A TARGET that drops packets would leave the client hanging for the kernel's SYN
  // timeout (minutes); give up as a refusal after a bound instead.
  const connectTimer = setTimeout(() => {
    log.warn({ target: `${target.host}:${target.port}`, timeoutMs: TARGET_CONNECT_TIMEOUT_MS }, 'target did not answer; client reset');
    backend.destroy();
    resetSocket(client);
  }, TARGET_CONNECT_TIMEOUT_MS);
  backend.once('close', () => clearTimeout(connectTimer));
  backend.once('connect', () => {
    clearTimeout(connectTimer);
    const info = relayInfo(client);
    if (args.proxyProtocol !== undefined && info !== undefined) backend.write(proxyHeader(args.proxyProtocol, info));
    void splice(client, backend).then((result) => log.debug({ client: client.remoteAddress, bytesIn: result.bytesAToB, bytesOut: result.bytesBToA, outcome: result.outcome }, 'connection closed'));
  });
  // The target refused or is unreachable: the public client learns at once, by a reset.
  backend.once('error', (err: NodeJS.ErrnoException) => {
    if (backend.connecting || !backend.remoteAddress) {
      log.warn({ target: `${target.host}:${target.port}`, err: err.code ?? err.message }, 'target refused the connection');
      resetSocket(client);
    }
  });
}

runService('expose', args, forward);
