import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

// Binds the proof to this protocol, so a MAC made for something else never verifies.
const CONTEXT = 'tcp-relay auth v1\n';

/** 256 random bits, fresh per registration, so a recorded PROOF never verifies again. */
export function newNonce(): string {
  return randomBytes(32).toString('hex');
}

// Tokens are made once per public client: drawing them from a pool refilled 256 at a
// time replaces a call into the CSPRNG per connection with one per 256.
const TOKEN_BYTES = 16;
const POOL_TOKENS = 256;
let pool = Buffer.alloc(0);
let poolOffset = 0;

/** 128 random bits (CSPRNG), each drawn once: a dial-back token, a resume key or a prewarm key. */
export function newToken(): string {
  if (poolOffset >= pool.length) {
    pool = randomBytes(TOKEN_BYTES * POOL_TOKENS);
    poolOffset = 0;
  }
  const token = pool.toString('hex', poolOffset, poolOffset + TOKEN_BYTES);
  poolOffset += TOKEN_BYTES;
  return token;
}

export function computeProof(secret: string, nonce: string): string {
  return createHmac('sha256', secret).update(CONTEXT).update(nonce).digest('hex');
}

/** Constant-time: how much of a guess matched never shows in the time taken. */
export function verifyProof(secret: string, nonce: string, mac: string): boolean {
  // Buffer.from(_, 'hex') stops at the first non-hex digit; only the exact form may verify.
  if (!/^[0-9a-f]{64}$/.test(mac)) return false;
  const expected = Buffer.from(computeProof(secret, nonce), 'hex');
  const given = Buffer.from(mac, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
