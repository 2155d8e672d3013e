import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { computeProof, newNonce, newToken, verifyProof } from '../../src/protocol/auth.js';
import { parseLine } from '../../src/protocol/parse.js';

const SECRET = 'correct horse battery staple';
const NONCE = 'a'.repeat(64);

test('a proof made with the right secret verifies', () => {
  const nonce = newNonce();
  const mac = computeProof(SECRET, nonce);
  assert.match(mac, /^[0-9a-f]{64}$/);
  assert.equal(computeProof(SECRET, nonce), mac, 'the same secret and nonce give the same proof');
  assert.equal(verifyProof(SECRET, nonce, mac), true);
  assert.deepEqual(parseLine(`PROOF ${mac}`), { ok: true, msg: { kind: 'PROOF', mac } }, 'a proof fits the PROOF line');
});

test('a proof made with a wrong secret does not verify', () => {
  const mac = computeProof('wrong secret', NONCE);
  assert.equal(verifyProof(SECRET, NONCE, mac), false);
  assert.equal(verifyProof(SECRET, NONCE, computeProof(`${SECRET} `, NONCE)), false);
  assert.equal(verifyProof(SECRET, NONCE, computeProof('', NONCE)), false);
});

test('a proof for another nonce does not verify, so a recorded PROOF cannot be replayed', () => {
  const recorded = computeProof(SECRET, NONCE);
  const fresh = 'b'.repeat(64);
  assert.notEqual(computeProof(SECRET, fresh), recorded);
  assert.equal(verifyProof(SECRET, fresh, recorded), false);
});

test('a truncated, extended, non-hex or empty mac does not verify', () => {
  const mac = computeProof(SECRET, NONCE);
  for (const [what, bad] of [
    ['truncated to 62 digits', mac.slice(0, 62)],
    ['truncated to 63 digits', mac.slice(0, 63)],
    ['truncated to half', mac.slice(0, 32)],
    ['one byte too many', `${mac}00`],
    ['not hex at all', 'z'.repeat(64)],
    ['non-hex in the middle', `${mac.slice(0, 30)}zz${mac.slice(32)}`],
    ['empty', ''],
    ['last digit changed', `${mac.slice(0, 63)}${mac.endsWith('0') ? '1' : '0'}`],
  ] as const) {
    assert.equal(verifyProof(SECRET, NONCE, bad), false, what);
  }
});

test('a mac followed by non-hex characters does not verify', () => {
  const mac = computeProof(SECRET, NONCE);
  assert.equal(verifyProof(SECRET, NONCE, `${mac}zz`), false);
});

test('the proof is bound to this protocol, not a bare HMAC of the nonce', () => {
  const bare = createHmac('sha256', SECRET).update(NONCE).digest('hex');
  assert.notEqual(computeProof(SECRET, NONCE), bare);
  assert.equal(verifyProof(SECRET, NONCE, bare), false);
});

/** Draws count values, each `digits` lowercase hex digits and none drawn twice; returns one of them. */
function drawFreshHex(draw: () => string, digits: number, count: number): string {
  const drawn = new Set<string>();
  const shape = new RegExp(`^[0-9a-f]{${digits}}$`);
  for (let i = 0; i < count; i++) {
    const value = draw();
    assert.match(value, shape);
    drawn.add(value);
  }
  assert.equal(drawn.size, count);
  return [...drawn][0]!;
}

test('tokens are 32 lowercase hex digits and 1000 of them are all different', () => {
  const token = drawFreshHex(newToken, 32, 1000);
  assert.deepEqual(parseLine(`DATA ${token}`), { ok: true, msg: { kind: 'DATA', token } }, 'a token fits the DATA line');
});

test('nonces are 64 lowercase hex digits, fresh every time', () => {
  const nonce = drawFreshHex(newNonce, 64, 100);
  assert.deepEqual(parseLine(`AUTH ${nonce}`), { ok: true, msg: { kind: 'AUTH', nonce } }, 'a nonce fits the AUTH line');
});
