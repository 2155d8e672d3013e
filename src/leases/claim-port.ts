import { OutOfFdsError } from '../errors.js';
import type { LeaseStore } from './lease-store.js';
import type { ClaimScope, PortPool, TryListen } from './port-pool.js';

/** Why a fleet claim stopped the search for a port. */
class ClaimStop extends Error {
  readonly elsewhere: number | undefined;

  constructor(elsewhere: number | undefined) {
    super('claim stopped');
    this.elsewhere = elsewhere;
  }
}

/**
 * A public port for a key, or why there is none: every port of the range is held
 * (`full`), the fleet could not be asked in time (`unreachable`), or the relay is out of
 * file descriptors (`fds`: a listen failed for want of one, which must not read as "no
 * free port").
 */
export type PortClaim = { ok: true; port: number } | { ok: false; why: 'full' | 'unreachable' | 'fds' };

/**
 * Picks a public port for a key: the pool's choice on a single relay; in a fleet, each
 * candidate is also claimed fleet-wide before the relay listens on it, and a key that
 * already has a port elsewhere in the fleet is sent to that port. `openDoor` throws an
 * OutOfFdsError to stop the search.
 */
export async function claimPort(
  pool: PortPool,
  store: LeaseStore,
  openDoor: TryListen,
  wanted: number | undefined,
  key: string,
  scope?: ClaimScope,
): Promise<PortClaim> {
  try {
    const port = await search(pool, store, openDoor, wanted, key, scope);
    return port === undefined ? { ok: false, why: 'full' } : port === 'unreachable' ? { ok: false, why: 'unreachable' } : { ok: true, port };
  } catch (err) {
    if (err instanceof OutOfFdsError) return { ok: false, why: 'fds' };
    throw err;
  }
}

async function search(
  pool: PortPool,
  store: LeaseStore,
  openDoor: TryListen,
  wanted: number | undefined,
  key: string,
  scope?: ClaimScope,
): Promise<number | undefined | 'unreachable'> {
  if (store.claim === undefined) return pool.acquire(openDoor, wanted, key, scope);
  const own = pool.reservedPortOf(key);
  let target = wanted;
  // Twice: a key that has a port elsewhere in the fleet asks for exactly that one next.
  for (let round = 0; round < 2; round++) {
    try {
      return await pool.acquire(async (candidate) => {
        const answer = await store.claim!(key, candidate, candidate === own, scope?.tenant);
        if (answer === 'taken') return false;
        if (answer === 'unreachable') throw new ClaimStop(undefined);
        if (answer !== 'granted') throw new ClaimStop(answer.elsewhere);
        // The key keeps this port fleet-wide even if another program holds it here:
        // the other nodes serve it, and this one can once the port is free.
        return openDoor(candidate);
      }, target, key, scope);
    } catch (err) {
      if (!(err instanceof ClaimStop)) throw err;
      if (err.elsewhere === undefined) return 'unreachable';
      target = err.elsewhere;
    }
  }
  return undefined;
}
