import type { Socket } from 'node:net';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import type { Admission } from '../client/options.js';
import { flagValue, SERVICE_RULES } from '../config/rules.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { resetSocket, splice } from '../net/splice.js';
import { splitHostPort } from '../protocol/addresses.js';
import { proxyHeader } from '../protocol/proxy-header.js';
import { relayInfo } from '../client/dial-back.js';
import { portArg, usageFailure } from './common.js';
import { argvWithEnv } from './env-options.js';
import { connectTarget, TargetCheck, type TargetFailure } from './expose-target.js';
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
    .example('$0 relay.example.com 8080 3000 --pool-file /etc/app/pool.key', 'one of several replicas behind one address (copy pool.key to each)')
    .example('$0 localhost 8080 22 --allow 192.0.2.0/24,2001:db8::/32', 'ssh reachable only from those ranges (the relay resets everyone else)')
    .fail(usageFailure('expose', 'RELAYHOST RELAYPORT TARGET')),
)
  .positional('target', { type: 'string', describe: 'The server to expose: PORT (on localhost) or HOST:PORT' })
  .option('proxy-protocol', { choices: ['v1', 'v2'] as const, describe: "Send TARGET a PROXY protocol header with the public client's address" })
  .option('check-interval', {
    type: 'string',
    default: '2',
    describe: 'With --pool-file: seconds between TCP checks of TARGET; while it is down the relay sends clients to the other members (0: no checks)',
  });
const args = await parser.parseAsync(argvWithEnv(parser, [...SERVICE_POSITIONALS, 'target']));

function parseTarget(text: string | undefined): { host: string; port: number } {
  if (text === undefined || text === '') throw new UsageError('TARGET is missing');
  if (/^\d+$/.test(text)) return { host: 'localhost', port: portArg('TARGET', text) };
  const target = splitHostPort(text);
  if (target === undefined) throw new UsageError(`TARGET must be PORT or HOST:PORT, got "${text}"`);
  return target;
}

let target: { host: string; port: number };
let checkIntervalMs: number;
try {
  target = parseTarget(args.target);
  checkIntervalMs = flagValue(SERVICE_RULES.checkIntervalMs, args.checkInterval);
} catch (err) {
  usageFailure('expose', 'RELAYHOST RELAYPORT TARGET')(undefined, err as Error);
}

const TARGET_CONNECT_TIMEOUT_MS = 10_000;
function logFailure(log: Logger, err: TargetFailure, outcome: string): void {
  const targetName = `${target.host}:${target.port}`;
  if (err.kind === 'timeout') log.warn({ target: targetName, timeoutMs: TARGET_CONNECT_TIMEOUT_MS }, `target did not answer; ${outcome}`);
  else log.warn({ target: targetName, err: err.message }, `target refused the connection; ${outcome}`);
}

/**
 * A refused connect says nothing listens at TARGET, so a pool member stops taking
 * clients at once. A timeout or a local error (out of descriptors) may be a moment's
 * load, left to the next check.
 */
function sayDownIfRefused(err: TargetFailure): void {
  if (err.kind === 'refused' && err.message === 'ECONNREFUSED') check?.sawFailure(err.message);
}

function serve(client: Socket, backend: Socket, log: Logger): void {
  const info = relayInfo(client);
  if (args.proxyProtocol !== undefined && info !== undefined) backend.write(proxyHeader(args.proxyProtocol, info));
  void splice(client, backend).then((result) => log.debug({ client: client.remoteAddress, bytesIn: result.bytesAToB, bytesOut: result.bytesBToA, outcome: result.outcome }, 'connection closed'));
}

function forward(client: Socket, log: Logger): void {
  connectTarget(target, TARGET_CONNECT_TIMEOUT_MS).then(
    (backend) => serve(client, backend, log),
    // The target refused or is unreachable: the public client learns at once, by a reset.
    (err: TargetFailure) => {
      logFailure(log, err, 'client reset');
      // A pool member says so first: the relay must not send it the next client too.
      sayDownIfRefused(err);
      resetSocket(client);
    },
  );
}

let check: TargetCheck | undefined;

/**
 * A pool member connects the target before it dials back, so a client the target would
 * refuse goes back to the relay (DECLINE) for another member, its bytes untouched.
 */
function admitter(log: Logger, track: (socket: Socket) => void) {
  return async (): Promise<Admission | 'decline'> => {
    if (check?.state === 'down') return 'decline';
    try {
      const backend = await connectTarget(target, TARGET_CONNECT_TIMEOUT_MS);
      const serveClient = (client: Socket): void => {
        track(client);
        serve(client, backend, log);
      };
      return { serve: serveClient, cancel: () => backend.destroy() };
    } catch (err) {
      logFailure(log, err as TargetFailure, 'client declined');
      sayDownIfRefused(err as TargetFailure);
      return 'decline';
    }
  };
}

runService('expose', args, forward, {
  ...(args.poolFile ? { admit: admitter } : {}),
  started: (registration, log) => {
    if (!args.poolFile || checkIntervalMs === 0) return;
    check = new TargetCheck(target, checkIntervalMs, log, (state) => registration.setHealth(state));
    check.start();
  },
});
