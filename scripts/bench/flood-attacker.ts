/**
 * The attacker of the bench's flood figure, in its own process so its CPU is not the
 * measurer's: opens connections to PORT from LOCALADDR at up to RATE a second for
 * SECONDS, and resets each HOLD_MS after it is connected (a connect-and-abort flood).
 * With HOLD_MS 0 most resets reach the relay before it has even accepted, and it drops
 * those cheaply (no peer address any more); a few milliseconds later the relay has
 * announced the client and its service dials back for nothing, the costly case.
 * Prints one JSON line: {"attempted":…,"connected":…,"failed":…,"resetByRelay":…,"seconds":…}.
 *
 * Usage: node dist/scripts/bench/flood-attacker.js PORT RATE SECONDS LOCALADDR HOLD_MS
 */
import { connect } from 'node:net';

const [portText, rateText, secondsText, localAddress = '127.0.0.1', holdText = '0'] = process.argv.slice(2);
const holdMs = Number(holdText);
const port = Number(portText);
const rate = Number(rateText);
const seconds = Number(secondsText);
/** Connections not yet connected at once; past this the kernel, not the relay, is the limit. */
const MAX_IN_FLIGHT = 2048;
const TICK_MS = 10;

let attempted = 0;
let connected = 0;
let failed = 0;
/** Connections the relay reset before ours did (the rate limit's refusals). */
let resetByRelay = 0;
let inFlight = 0;

function one(): void {
  attempted++;
  inFlight++;
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  socket.once('connect', () => {
    connected++;
    if (holdMs === 0) socket.resetAndDestroy();
    else setTimeout(() => socket.resetAndDestroy(), holdMs);
  });
  socket.once('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ECONNRESET') resetByRelay++;
    else failed++;
  });
  socket.once('close', () => inFlight--);
}

const started = performance.now();
const timer = setInterval(() => {
  const elapsed = (performance.now() - started) / 1000;
  if (elapsed >= seconds) {
    clearInterval(timer);
    process.stdout.write(JSON.stringify({ attempted, connected, failed, resetByRelay, seconds: elapsed }) + '\n');
    return;
  }
  // Catch up to the rate, as far as the in-flight cap allows.
  const due = Math.floor(elapsed * rate) - attempted;
  for (let i = 0; i < due && inFlight < MAX_IN_FLIGHT; i++) one();
}, TICK_MS);
