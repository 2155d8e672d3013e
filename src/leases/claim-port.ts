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
 * Picks a public port for a key: the pool's choice on a single relay; in a fleet, each
 * candidate is also claimed fleet-wide before the relay listens on it, and a key that
 * already has a port elsewhere in the fleet is sent to that port. Undefined when no
 * port is free, 'unreachable' when the fleet could not be asked in time.
 */
export async function claimPort(
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
