import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { apiRoutes } from './api.js';
import { authorized, type BasicCredentials } from './basic-auth.js';
import { renderMetrics } from './metrics.js';
import type { Overview } from './overview.js';
import type { RelayStats } from './stats.js';

/** The dashboard's page and script, shipped in the package's web/ directory. */
const WEB_DIR = new URL('../../../web/', import.meta.url);

/** How often the rates behind the sparklines are sampled. */
const SAMPLE_INTERVAL_MS = 1000;

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
}

/**
 * The relay's HTTP listener for people and scrapers: the dashboard at /, its JSON under
 * /api/, Prometheus /metrics and /healthz; everything else is 404.
 */
export async function serveMonitor(source: { stats: RelayStats; overview: Overview }, host: string, port: number, options: MonitorOptions = {}): Promise<Server> {
  const assets = loadAssets();
  const api = apiRoutes(source.stats, source.overview);
  const respond = (req: IncomingMessage, res: ServerResponse): void => {
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
    const route = api.get(path);
    if (asset !== undefined) {
      res.writeHead(200, { ...COMMON_HEADERS, ...asset.headers, 'Content-Type': asset.type }).end(asset.body);
    } else if (route !== undefined) {
      res.writeHead(200, { ...COMMON_HEADERS, 'Content-Type': 'application/json' }).end(JSON.stringify(route()));
    } else if (path === '/metrics') {
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }).end(renderMetrics(source.stats));
    } else if (path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /, /api/overview, /metrics or /healthz\n');
    }
  };
  const server = createServer(respond);
  const sampler = setInterval(() => source.overview.sample(), SAMPLE_INTERVAL_MS).unref();
  server.on('close', () => clearInterval(sampler));
  const failed = once(server, 'error').then(([err]) => Promise.reject(err as Error));
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), failed]);
  server.on('error', options.onError ?? (() => {}));
  return server;
}

export function boundPort(server: Server): number {
  return (server.address() as AddressInfo).port;
}
