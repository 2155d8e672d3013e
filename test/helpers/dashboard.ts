import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { get, type IncomingMessage } from 'node:http';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { OverviewSnapshot } from '../../src/monitor/api.js';
import { deadline, portsFlag } from './net.js';
import { ROOT, startRelay, type RelayProcess } from './processes.js';

/** ./relay with its --metrics listener on a free loopback port; `base` ends in a slash. */
export async function relayWithDashboard(t: TestContext, args: string[] = [], env: Record<string, string> = {}): Promise<RelayProcess & { base: string }> {
  const relay = await startRelay(t, [...portsFlag(), '--metrics', '127.0.0.1:0', ...args], env);
  const base = (await relay.waitFor('stderr', /"dashboard":"(http:[^"]+)"/))[1]!;
  return { ...relay, base };
}

/** GET base + path as JSON, optionally with basic auth. */
export async function getJson<T = OverviewSnapshot>(base: string, path = 'api/overview', auth?: string): Promise<T> {
  const headers: Record<string, string> = auth === undefined ? {} : { authorization: `Basic ${Buffer.from(auth).toString('base64')}` };
  const response = await fetch(new URL(path, base), { headers, signal: AbortSignal.timeout(5000) });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

/** `./relay ARGS` to completion (`relay status`, a usage error): a short-lived command, unlike the relay itself. */
export function relayCommand(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(path.join(ROOT, 'relay'), args, { env: { ...process.env, ...env }, timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

/** One GET with exactly this Host header (fetch may not set one): status and body. */
export async function getWithHost(port: number, host: string, route = '/healthz', headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const request = get({ host: '127.0.0.1', port, path: route, headers: { ...headers, host }, agent: false, signal: deadline(5000) });
  const [response] = (await once(request, 'response')) as [IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return { status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() };
}
