import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { requireTools, toolPath } from '../helpers/tools.js';
import { relayWithDashboard } from '../helpers/dashboard.js';
import { dial, eventually, readAtLeast, readToEnd } from '../helpers/net.js';
import { startService } from '../helpers/processes.js';
import { Peer, registerRaw } from '../helpers/protocol.js';

const WAIT_MS = 10_000;

/** Debian's chromium, headless, with a fresh profile and nothing that phones home; closed after the test. */
async function browser(t: TestContext, viewport = { width: 1200, height: 900 }): Promise<BrowserContext> {
  const profile = await mkdtemp(path.join(tmpdir(), 'relay-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    // The chromium requireTools found, wherever on PATH it is.
    executablePath: toolPath('chromium'),
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport,
    timeout: 30_000,
  });
  t.after(async () => {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  });
  return context;
}

/**
 * Every request the page makes, recorded; those for any other origin than the
 * dashboard's are aborted, so even a failing test sends nothing off the machine.
 */
async function recordRequests(context: BrowserContext, origin: string): Promise<string[]> {
  const seen: string[] = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    seen.push(url);
    return url.startsWith(`${origin}/`) ? route.continue() : route.abort();
  });
  return seen;
}

const exactly = (text: string): RegExp => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

/**
 * Waits until the element's text is exactly `text`. Playwright's locators, not
 * waitForFunction: the page's Content-Security-Policy rightly forbids the eval that
 * a string predicate needs.
 */
async function textBecomes(page: Page, selector: string, text: string): Promise<void> {
  await page
    .locator(selector)
    .filter({ hasText: exactly(text) })
    .waitFor({ timeout: WAIT_MS });
}

const tunnelsCell = (port: number): string => `#services tr[data-port="${port}"] [data-field="tunnelsOpen"]`;
const probeCell = (port: number): string => `#services tr[data-port="${port}"] [data-field="probe"]`;

test('dashboard in chromium: every public port shows with its probe, open-tunnel counts follow tunnels, hostile text stays text, nothing leaves the listener', async (t) => {
  if (!requireTools(t, 'chromium')) return;
  const relay = await relayWithDashboard(t, ['--probe', '0.2']);
  const first = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  const second = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  const featless = await registerRaw(t, relay.port);
  const context = await browser(t);
  const origin = new URL(relay.base).origin;
  const requests = await recordRequests(context, origin);
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') pageErrors.push(msg.text());
  });
  await page.goto(relay.base);

  for (const service of [first, second]) {
    await textBecomes(page, `#services tr[data-port="${service.publicPort}"] [data-field="publicAddress"]`, `127.0.0.1:${service.publicPort}`);
    await textBecomes(page, tunnelsCell(service.publicPort), '0');
    await page
      .locator(probeCell(service.publicPort))
      .filter({ hasText: /^ok \d+(\.\d)? ms$/ })
      .waitFor({ timeout: WAIT_MS });
  }
  // It did not announce probes: shown as such, not as a failure.
  await textBecomes(page, probeCell(featless.registration.publicPort), 'not probed');

  // Tunnels open (a byte echoed proves each is spliced) and the counts follow, no reload.
  const clients = [await dial(t, first.publicPort), await dial(t, first.publicPort), await dial(t, second.publicPort)];
  for (const client of clients) {
    client.write('x');
    await readAtLeast(client, 1);
  }
  await textBecomes(page, tunnelsCell(first.publicPort), '2');
  await textBecomes(page, tunnelsCell(second.publicPort), '1');
  clients[0]!.end();
  await readToEnd(clients[0]!);
  await textBecomes(page, tunnelsCell(first.publicPort), '1');
  for (const client of clients.slice(1)) {
    client.end();
    await readToEnd(client);
  }
  await textBecomes(page, tunnelsCell(first.publicPort), '0');
  await textBecomes(page, tunnelsCell(second.publicPort), '0');
  await eventually(async () => (await page.locator('#tunnels tbody tr:not(.empty)').count()) === 3, WAIT_MS, 'three closed tunnels listed');

  // The protocol's host pattern lets no markup into a service's address; what untrusted
  // text does reach the page is a refusal's echo of the unknown word a peer sent.
  for (const hostile of ['<b>pwned</b>', '<script>x</script>']) {
    const peer = await Peer.open(t, relay.port);
    peer.send(hostile);
    await peer.nextLine();
  }
  const shown = 'connection refused: unknown message "<script>x</script>"';
  await page
    .locator('#refusals td')
    .filter({ hasText: exactly(shown) })
    .waitFor({ timeout: WAIT_MS });
  await page
    .locator('#refusals td')
    .filter({ hasText: exactly('connection refused: unknown message "<b>pwned</b>"') })
    .waitFor({ timeout: WAIT_MS });
  assert.equal(await page.evaluate('document.querySelectorAll("main b, main script").length'), 0, 'no element was made from hostile text');

  assert.deepEqual(pageErrors, []);
  assert.ok(requests.length >= 3, `requests seen: ${requests.join(', ')}`);
  assert.deepEqual(
    requests.filter((url) => !url.startsWith(`${origin}/`)),
    [],
    'every request goes to the metrics listener',
  );
});

test('dashboard on a phone-sized screen: the page itself does not scroll sideways, wide tables scroll in their box', async (t) => {
  if (!requireTools(t, 'chromium')) return;
  const relay = await relayWithDashboard(t);
  const echo = await startService(t, 'echoserver', ['127.0.0.1', String(relay.port)]);
  const context = await browser(t, { width: 360, height: 740 });
  const page = await context.newPage();
  await page.goto(relay.base);
  await textBecomes(page, tunnelsCell(echo.publicPort), '0');
  assert.ok(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth'), 'no sideways scrolling of the page');
  assert.ok(await page.evaluate('parseFloat(getComputedStyle(document.body).fontSize) >= 14'), 'text is at least 14px');
});
