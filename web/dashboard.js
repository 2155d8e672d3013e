// The relay dashboard: polls the JSON API and redraws. Every value from the API goes
// into the page as text (append/textContent), never as markup: service addresses,
// client addresses and refusal messages are untrusted text.
'use strict';

const POLL_MS = 1000;
const SVG_NS = 'http://www.w3.org/2000/svg';

/** An element with attributes (class, data-*, title) and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value !== undefined) node.setAttribute(name, String(value));
  }
  node.append(...children.filter((child) => child !== undefined && child !== null).map((child) => (child instanceof Node ? child : String(child))));
  return node;
}

function formatBytes(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function formatDuration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)} s`;
  const d = Math.floor(s / 86400);
  const h = Math.floor(s / 3600) % 24;
  const m = Math.floor(s / 60) % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return `${m}m ${s % 60}s`;
}

const clock = (ms) => new Date(ms).toLocaleTimeString();
const rate = (bytesPerSecond) => `${formatBytes(bytesPerSecond)}/s`;
const ms = (value) => (value === null ? '–' : `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`);

/** Two lines (in, out) over the last minute, scaled to their common maximum. */
function sparkline(history) {
  const width = 80;
  const height = 22;
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('aria-hidden', 'true');
  const max = Math.max(1, ...history.fromClients, ...history.toClients);
  for (const [series, cls] of [
    [history.fromClients, 'in'],
    [history.toClients, 'out'],
  ]) {
    const step = width / Math.max(1, series.length - 1);
    const points = series.map((v, i) => `${(i * step).toFixed(1)},${(height - 1 - (v / max) * (height - 2)).toFixed(1)}`);
    const line = document.createElementNS(SVG_NS, 'polyline');
    line.setAttribute('class', cls);
    line.setAttribute('points', points.join(' '));
    svg.append(line);
  }
  return svg;
}

function card(label, value, detail) {
  return el('div', { class: 'card', 'data-card': label }, el('dt', null, label), el('dd', null, value, detail === undefined ? undefined : el('small', null, detail)));
}

function renderRelay(relay) {
  const { dialback } = relay;
  document
    .getElementById('relay')
    .replaceChildren(
      card('uptime', formatDuration(relay.uptimeSeconds * 1000), `since ${new Date(relay.startedAt).toLocaleString()}`),
      card('services', relay.services),
      card('open tunnels', relay.tunnelsOpen, `${relay.tunnelsOpened} since start`),
      card('in from clients', formatBytes(relay.bytesFromClients), rate(relay.rate.fromClients)),
      card('out to clients', formatBytes(relay.bytesToClients), rate(relay.rate.toClients)),
      card('dial-back p50 / p99', `≤ ${ms(dialback.p50Ms)} / ≤ ${ms(dialback.p99Ms)}`, `${dialback.count} observed, mean ${ms(dialback.meanMs)}`),
      card('memory', formatBytes(relay.memory.rssBytes), `heap ${formatBytes(relay.memory.heapUsedBytes)}`),
      card('open fds', relay.openFds ?? '?', `${relay.warmIdle} warm data connections`),
    );
}

/** A table body, or one muted row saying why it is empty. */
function fill(tableId, rows, emptyText) {
  const table = document.getElementById(tableId);
  const columns = table.tHead.rows[0].cells.length;
  table.tBodies[0].replaceChildren(...(rows.length > 0 ? rows : [el('tr', { class: 'empty' }, el('td', { colspan: columns }, emptyText))]));
}

/** The end-to-end probe as a badge: ok with its latency, failing with why, pending, or not probed (never a failure). */
function probeBadge(probe) {
  const text =
    {
      ok: probe.latencyMs === null ? 'ok' : `ok ${ms(probe.latencyMs)}`,
      failing: `failing ×${probe.failuresInARow}`,
      pending: 'pending',
      'not-probed': 'not probed',
    }[probe.state] ?? String(probe.state);
  const title = probe.lastAt === null ? undefined : `last result ${clock(probe.lastAt)}`;
  const badge = el('span', { class: `probe probe-${probe.state}`, 'data-field': 'probe', title }, text);
  return el('td', { class: 'probe-cell' }, badge, probe.state === 'failing' && probe.reason !== null ? el('small', { class: 'probe-reason' }, ` ${probe.reason}`) : undefined);
}

function renderServices(services, now) {
  const tenants = services.some((s) => s.tenant !== null);
  for (const th of document.querySelectorAll('#services th.tenant')) th.classList.toggle('hidden', !tenants);
  const rows = services.flatMap((s) => [
    el(
      'tr',
      { 'data-port': s.publicPort },
      el('td', { 'data-field': 'publicAddress' }, s.publicAddress),
      el('td', { title: new Date(s.since).toLocaleString() }, formatDuration(now - s.since)),
      el('td', { class: 'num', 'data-field': 'tunnelsOpen' }, s.tunnelsOpen),
      el('td', { class: 'num', 'data-field': 'waiting' }, s.waiting),
      el('td', { class: 'num in' }, formatBytes(s.bytesFromClients)),
      el('td', { class: 'num out' }, formatBytes(s.bytesToClients)),
      el('td', { title: `in ${rate(s.rate.fromClients)}, out ${rate(s.rate.toClients)}` }, sparkline(s.history)),
      el('td', { class: tenants ? 'tenant' : 'tenant hidden' }, s.tenant ?? '–'),
      el('td', s.held ? { class: 'held' } : null, s.held ? 'held' : s.members === null ? 'live' : `pool of ${s.members.length}`),
      probeBadge(s.probe),
    ),
    ...(s.members ?? []).map((m) => memberRow(m, tenants)),
  ]);
  fill('services', rows, 'No service registered.');
}

/** One member of a pool, under its pool's row: its control connection, its load, its state. */
function memberRow(m, tenants) {
  return el(
    'tr',
    { class: 'member', 'data-member': m.id },
    el('td', { 'data-field': 'peer' }, `\u21b3 member ${m.peer}`),
    el('td', null),
    el('td', { class: 'num', 'data-field': 'tunnelsOpen' }, m.tunnelsOpen),
    el('td', { class: 'num', 'data-field': 'waiting' }, m.waiting),
    el('td', null),
    el('td', null),
    el('td', null),
    el('td', { class: tenants ? 'tenant' : 'tenant hidden' }),
    el('td', { class: `member-${m.state}`, 'data-field': 'state' }, m.state),
    probeBadge(m.probe),
  );
}

function renderRecent(snapshot) {
  const counts = Object.entries(snapshot.relay.refusals).sort((a, b) => b[1] - a[1]);
  fill(
    'refusal-counts',
    counts.map(([reason, n]) => el('tr', null, el('td', null, reason), el('td', { class: 'num' }, n))),
    'No refusals.',
  );
  fill(
    'tunnels',
    snapshot.recentTunnels.map((t) =>
      el(
        'tr',
        null,
        el('td', null, clock(t.closedAt)),
        el('td', { class: 'num' }, t.publicPort),
        el('td', null, t.client ?? '–'),
        el('td', { class: 'num' }, formatDuration(t.durationMs)),
        el('td', { class: 'num in' }, formatBytes(t.bytesFromClient)),
        el('td', { class: 'num out' }, formatBytes(t.bytesToClient)),
        el('td', null, t.closedBy),
        el('td', null, t.error === undefined ? t.outcome : `${t.outcome} (${t.error})`),
      ),
    ),
    'No tunnel closed yet.',
  );
  fill(
    'refusals',
    snapshot.recentRefusals.map((r) => el('tr', null, el('td', null, clock(r.at)), el('td', null, r.reason), el('td', null, r.peer ?? '–'), el('td', { class: 'text' }, r.message))),
    'No refusals.',
  );
}

function setStatus(state, text) {
  const status = document.getElementById('status');
  status.dataset.state = state;
  status.textContent = text;
}

async function poll() {
  try {
    const response = await fetch('api/overview', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const snapshot = await response.json();
    renderRelay(snapshot.relay);
    renderServices(snapshot.services, snapshot.now);
    renderRecent(snapshot);
    setStatus('live', `live, updated ${clock(snapshot.now)}`);
  } catch (err) {
    setStatus('down', `cannot reach the relay (${err instanceof Error ? err.message : String(err)}); retrying`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

void poll();
