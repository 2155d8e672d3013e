/**
 * `npm run screenshot [FILE]`: starts a relay with its dashboard, a few services with
 * tunnels carrying traffic, some closed tunnels and a refusal, and saves a picture of
 * the page (default docs/dashboard.png) taken with Debian's headless chromium. Every
 * process it starts is stopped however it ends.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { freePort } from './bench/paths.js';
import { ROOT, installCleanup, startProcess, stopProcess, type Proc } from './bench/procs.js';

const CHROMIUM = '/usr/bin/chromium';
const out = path.resolve(process.argv[2] ?? path.join(ROOT, 'docs', 'dashboard.png'));

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

async function until<T>(what: string, attempt: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await attempt().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function main(): Promise<void> {
  installCleanup();
  const [relayPort, metricsPort] = [await freePort(40), await freePort()];
  const relay = startProcess('relay', path.join(ROOT, 'relay'), [String(relayPort), '--metrics', `127.0.0.1:${metricsPort}`, '--probe', '1']);
  const base = `http://127.0.0.1:${metricsPort}/`;
  await until('the dashboard', async () => ((await fetch(base)).ok ? true : undefined));
  const services: Proc[] = [];
  const ports: number[] = [];
  for (const host of ['localhost', '127.0.0.1', 'localhost']) {
    const service = startProcess('echoserver', path.join(ROOT, 'echoserver'), [host, String(relayPort)]);
    services.push(service);
    ports.push(Number((await service.waitLine(/^established relay address: .+:(\d+)$/, 15_000))[1]));
  }
  // A few finished tunnels, a few open ones carrying traffic, and one refusal.
  for (let i = 0; i < 4; i++) {
    const client = await open(ports[i % 2]!);
    client.on('data', () => {});
    client.end(Buffer.alloc(1000 * (i + 1)));
    await new Promise((resolve) => client.once('close', resolve));
  }
  const stranger = await open(relayPort);
  stranger.on('error', () => {});
  stranger.end('GET / HTTP/1.1\r\n\r\n');
  const busy = await Promise.all([open(ports[0]!), open(ports[0]!), open(ports[1]!)]);
  let tick = 0;
  const pump = setInterval(() => {
    tick++;
    busy.forEach((socket, i) => socket.write(Buffer.alloc(((tick * (i + 3)) % 7) * 20_000 + 5_000)));
  }, 250);
  for (const socket of busy) socket.on('data', () => {});

  const profile = mkdtempSync(path.join(tmpdir(), 'relay-screenshot-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1100, height: 800 },
    colorScheme: 'light',
  });
  try {
    const page = await context.newPage();
    await page.goto(base);
    await page.locator('#services tr[data-port]').nth(2).waitFor({ timeout: 15_000 });
    // Let the sparklines fill with a dozen samples.
    await new Promise((resolve) => setTimeout(resolve, 12_000));
    await page.screenshot({ path: out, fullPage: true });
  } finally {
    clearInterval(pump);
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    for (const socket of busy) socket.destroy();
    for (const proc of [...services, relay]) await stopProcess(proc);
  }
  process.stderr.write(`screenshot: wrote ${path.relative(process.cwd(), out)}\n`);
}

await main();
