import yargs from 'yargs';
import { joinHostPort } from '../protocol/addresses.js';
import type { OverviewSnapshot } from '../monitor/api.js';
import { metricsAuthArg, PACKAGE_VERSION, parseListen, usageFailure } from './common.js';
import { renderStatus } from './status-table.js';

const DEFAULT_METRICS = '127.0.0.1:9100';
const FETCH_TIMEOUT_MS = 5000;

const parser = (argv: string[]) =>
  yargs(argv)
    .scriptName('relay status')
    .usage("$0 [options]\n\nPrints a running relay's overview (its services, tunnels and refusals) from its --metrics listener.")
    .option('metrics', { type: 'string', describe: `Where the relay's --metrics listener is: HOST:PORT or PORT (also RELAY_METRICS) [default: ${DEFAULT_METRICS}]` })
    .option('metrics-auth', { type: 'string', describe: 'USER:PASS, when the relay has --metrics-auth (also RELAY_METRICS_AUTH)' })
    .example('$0 --metrics 127.0.0.1:9100', 'the relay started with --metrics 127.0.0.1:9100')
    .strict()
    .help()
    .version(PACKAGE_VERSION)
    .fail(usageFailure('relay status'));

/** One line on stderr and exit 1: the relay could not be asked, which is not a usage error. */
function unreachable(text: string): never {
  process.stderr.write(`relay status: ${text}\n`);
  process.exit(1);
}

async function fetchOverview(url: string, authorization: string | undefined): Promise<OverviewSnapshot> {
  let response: Response;
  try {
    response = await fetch(url, { headers: authorization === undefined ? {} : { authorization }, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (err) {
    const cause = (err as { cause?: NodeJS.ErrnoException }).cause;
    const why = (err as Error).name === 'TimeoutError' ? `no answer within ${FETCH_TIMEOUT_MS / 1000} s` : (cause?.code ?? cause?.message ?? String(err));
    return unreachable(`cannot reach ${url} (${why}); is the relay running with --metrics?`);
  }
  if (response.status === 401) {
    return unreachable(`${url} needs credentials: ${authorization === undefined ? 'give' : 'check'} --metrics-auth USER:PASS (or RELAY_METRICS_AUTH)`);
  }
  if (response.status === 421) {
    return unreachable(`${url} does not answer to the name ${new URL(url).hostname}: give the relay --metrics-host ${new URL(url).hostname}, or use its address`);
  }
  if (!response.ok) return unreachable(`${url} answered HTTP ${response.status}`);
  try {
    const snapshot = (await response.json()) as OverviewSnapshot;
    if (typeof snapshot.relay !== 'object' || !Array.isArray(snapshot.services)) throw new Error('not an overview');
    return snapshot;
  } catch {
    return unreachable(`${url} did not answer with a relay overview; is it the relay's --metrics listener?`);
  }
}

/** `relay status`: the overview of a running relay, as tables on stdout. */
export async function runStatus(argv: string[]): Promise<void> {
  const args = await parser(argv).parseAsync();
  // Only these two variables: the relay's other RELAY_* settings (its secret) are not ours.
  const metrics = args.metrics ?? process.env['RELAY_METRICS'] ?? DEFAULT_METRICS;
  const auth = args.metricsAuth ?? process.env['RELAY_METRICS_AUTH'];
  let url: string;
  let authorization: string | undefined;
  try {
    const where = parseListen('--metrics', metrics);
    url = `http://${joinHostPort(where.host, where.port)}/api/overview`;
    if (auth !== undefined && auth !== '') {
      const { user, password } = metricsAuthArg(auth);
      authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    }
  } catch (err) {
    return usageFailure('relay status')(undefined, err as Error);
  }
  process.stdout.write(renderStatus(await fetchOverview(url, authorization)));
}
