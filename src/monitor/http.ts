import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { joinHostPort } from '../protocol/addresses.js';
import { API_ROUTES, overviewSnapshot, type OverviewSnapshot } from './api.js';
import { authorized, type BasicCredentials } from './basic-auth.js';
import { limitConnections, SERVER_OPTIONS } from './connection-limits.js';
import type { FleetView } from './fleet-view.js';
import { renderMetrics } from './metrics.js';
import type { Overview } from './overview.js';
import { isLoopback, ServedHosts } from './served-hosts.js';
import type { RelayStats } from './stats.js';
import { mergeSnapshots, type WorkerSnapshot } from './workers-view.js';

/** The dashboard's page and script, shipped in the package's web/ directory. */
const WEB_DIR = new URL('../../../web/', import.meta.url);

/** How often the rates behind the sparklines are sampled. */
const SAMPLE_INTERVAL_MS = 1000;
/** Requests for a name the listener does not answer to are logged at most this often (an attacker sends many). */
const REFUSED_HOST_LOG_MS = 60_000;

interface Asset {
  body: Buffer;
  type: string;
  headers?: Record<string, string>;
}

/**
 * The page may load only its own script and talk only to this listener: even a value
 * that escaped escaping could neither run inline script nor send data elsewhere.
 */
function contentSecurityPolicy(html: string): string {
  const style = /<style>([\s\S]*?)<\/style>/.exec(html)?.[1] ?? '';
  const styleHash = createHash('sha256').update(style).digest('base64');
  return [
    "default-src 'none'",
    "script-src 'self'",
    `style-src 'sha256-${styleHash}'`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

function loadAssets(): Map<string, Asset> {
  const html = readFileSync(new URL('dashboard.html', WEB_DIR));
  const script = readFileSync(new URL('dashboard.js', WEB_DIR));
  const page: Asset = { body: html, type: 'text/html; charset=utf-8', headers: { 'Content-Security-Policy': contentSecurityPolicy(html.toString('utf8')) } };
  return new Map([
    ['/', page],
    ['/index.html', page],
    ['/dashboard.js', { body: script, type: 'text/javascript; charset=utf-8' }],
  ]);
}

const COMMON_HEADERS = { 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer', 'Cache-Control': 'no-store' };

interface MonitorOptions {
  /** HTTP basic auth for every path; open when undefined. */
  auth?: BasicCredentials;
  /**
   * Errors after the listener is up (an accept that fails for want of file
   * descriptors): reported here, and the listener keeps going.
   */
  onError?: (err: Error) => void;
  /** Host names (or addresses) answered besides the listener's own (--metrics-host). */
  hosts?: readonly string[];
  /** Where the listener's warnings go: open to the network, a request for a foreign host. */
  log?: Logger;
}

/** What the listener shows: the relay's counters and record, and a fleet node's view of its fleet. */
export interface MonitorSource {
  stats: RelayStats;
  overview: Overview;
  fleet?: () => FleetView;
  /** With several workers: the other workers' figures, gathered for each request (this one's are added). */
  siblings?: () => Promise<WorkerSnapshot[]>;
}

/** This process's figures, as a sibling worker sends them to the one serving --metrics. */
export function workerSnapshot(source: MonitorSource): WorkerSnapshot {
  const { stats } = source;
  return {
    overview: overviewSnapshot(stats, source.overview, source.fleet),
    metrics: renderMetrics(stats),
    dialback: { counts: [...stats.dialbackCounts], sumSeconds: stats.dialbackSumSeconds },
  };
}

/** The relay's /metrics text and overview: this process's, or with siblings every worker's added up. */
async function relayFigures(source: MonitorSource): Promise<{ metrics: () => string; overview: () => OverviewSnapshot }> {
  const { siblings, stats } = source;
  if (siblings === undefined) return { metrics: () => renderMetrics(stats), overview: () => overviewSnapshot(stats, source.overview, source.fleet) };
  const merged = mergeSnapshots(workerSnapshot(source), await siblings(), stats.dialbackBuckets);
  return { metrics: () => merged.metrics, overview: () => merged.overview };
}

/** The one warning for a listener reachable beyond this machine without a password; undefined when none is due. */
export function exposureWarning(host: string, auth: boolean): string | undefined {
  if (auth || isLoopback(host.toLowerCase())) return undefined;
  return 'metrics: listening beyond this machine without --metrics-auth: whoever reaches it sees every service, client address and refusal; add --metrics-auth USER:PASS or bind 127.0.0.1';
}

/** Logs a refused Host header, at most once a REFUSED_HOST_LOG_MS, with how many went unlogged. */
function refusedHostLog(log: Logger | undefined): (host: string) => void {
  let lastAt = Number.NEGATIVE_INFINITY;
  let unlogged = 0;
  return (host) => {
    const now = performance.now();
    if (log === undefined || now - lastAt < REFUSED_HOST_LOG_MS) return void unlogged++;
    log.warn({ host: host.slice(0, 100), alsoRefused: unlogged }, 'metrics: refused a request for a host name this listener does not answer to (DNS rebinding, or a name to add with --metrics-host)');
    lastAt = now;
    unlogged = 0;
  };
}

/**
 * The relay's HTTP listener for people and scrapers: the dashboard at /, its JSON under
 * /api/, Prometheus /metrics and /healthz; everything else is 404.
 */
export async function serveMonitor(source: MonitorSource, host: string, port: number, options: MonitorOptions = {}): Promise<Server> {
  const assets = loadAssets();
  const served = new ServedHosts(host, options.hosts);
  const refusedHost = refusedHostLog(options.log);
  const respond = (req: IncomingMessage, res: ServerResponse): void => {
    // Before the password: a foreign page must not get to guess it from a visitor's browser either.
    if (!served.allows(req.headers.host)) {
      refusedHost(req.headers.host ?? '');
      res.writeHead(421, { ...COMMON_HEADERS, 'Content-Type': 'text/plain' }).end('this listener does not answer to that host name; the relay operator can add it with --metrics-host\n');
      return;
    }
    if (options.auth !== undefined && !authorized(req.headers.authorization, options.auth)) {
      res.writeHead(401, { ...COMMON_HEADERS, 'WWW-Authenticate': 'Basic realm="relay", charset="UTF-8"', 'Content-Type': 'text/plain' }).end('authentication required\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const asset = assets.get(path);
    const route = API_ROUTES.get(path);
    if (asset !== undefined) {
      res.writeHead(200, { ...COMMON_HEADERS, ...asset.headers, 'Content-Type': asset.type }).end(asset.body);
    } else if (route !== undefined || path === '/metrics') {
      void relayFigures(source).then(
        (figures) => {
          if (route !== undefined) res.writeHead(200, { ...COMMON_HEADERS, 'Content-Type': 'application/json' }).end(JSON.stringify(route(figures.overview())));
          else res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }).end(figures.metrics());
        },
        () => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('the figures could not be gathered\n'),
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /, /api/overview, /metrics or /healthz\n');
    }
  };
  const server = createServer(SERVER_OPTIONS, respond);
  limitConnections(server);
  const sampler = setInterval(() => source.overview.sample(), SAMPLE_INTERVAL_MS).unref();
  server.on('close', () => clearInterval(sampler));
  const failed = once(server, 'error').then(([err]) => Promise.reject(err as Error));
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), failed]);
  served.addBound((server.address() as AddressInfo).address);
  server.on('error', options.onError ?? (() => {}));
  const warning = exposureWarning(host, options.auth !== undefined);
  if (warning !== undefined) options.log?.warn({ metrics: joinHostPort(host, boundPort(server)) }, warning);
  return server;
}

export function boundPort(server: Server): number {
  return (server.address() as AddressInfo).port;
}
