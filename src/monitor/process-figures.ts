import { readdirSync } from 'node:fs';

/** The process start, in seconds since the epoch. */
export const startedAt = Date.now() / 1000;

/** Listing /proc/self/fd costs one entry per socket: with 10 000 tunnels, not per request. */
const FD_COUNT_TTL_MS = 1000;
let fdCount = { value: Number.NaN, at: Number.NEGATIVE_INFINITY };

/** Open file descriptors, at most a second old; NaN where /proc is missing (not Linux). */
export function openFileDescriptors(): number {
  const now = performance.now();
  if (now - fdCount.at < FD_COUNT_TTL_MS) return fdCount.value;
  let value: number;
  try {
    value = readdirSync('/proc/self/fd').length;
  } catch {
    value = Number.NaN;
  }
  fdCount = { value, at: now };
  return value;
}
