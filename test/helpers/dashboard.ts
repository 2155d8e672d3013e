import type { TestContext } from 'node:test';
import type { OverviewSnapshot } from '../../src/monitor/api.js';
import { portsFlag } from './net.js';
import { startRelay, type RelayProcess } from './processes.js';

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
