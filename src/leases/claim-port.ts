import { OutOfFdsError } from '../errors.js';
import type { ClaimAnswer, LeaseStore } from './lease-store.js';
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
export async function claimPort(pool: PortPool, store: LeaseStore, openDoor: TryListen, wanted: number | undefined, key: string, scope?: ClaimScope): Promise<PortClaim> {
  const claim = store.claim?.bind(store);
  try {
    if (claim === undefined) return found(await pool.acquire(openDoor, wanted, key, scope));
    const agreed = (candidate: number, known: boolean): Promise<ClaimAnswer> => claim(key, candidate, known, scope?.tenant);
    // Agreed first, then listened on: the key keeps a port fleet-wide even if another
    // program holds it here, as the other nodes serve it (and this one once it is free).
    const acquire = (target: number | undefined, agree: TryListen): Promise<number | undefined> =>
      pool.acquire(async (candidate) => (await agree(candidate)) && openDoor(candidate), target, key, scope);
    return await claimInFleet(agreed, acquire, pool.reservedPortOf(key), wanted);
  } catch (err) {
    if (err instanceof OutOfFdsError) return { ok: false, why: 'fds' };
    throw err;
  }
}

const found = (port: number | undefined): PortClaim => (port === undefined ? { ok: false, why: 'full' } : { ok: true, port });

/**
 * The pool's search (`acquire`) with each candidate agreed fleet-wide first; `own` is
 * the port this key holds here already, which it may keep when etcd cannot be asked.
 */
async function claimInFleet(
  agreed: (candidate: number, known: boolean) => Promise<ClaimAnswer>,
  acquire: (wanted: number | undefined, agree: TryListen) => Promise<number | undefined>,
  own: number | undefined,
  wanted: number | undefined,
): Promise<PortClaim> {
  let target = wanted;
  // Twice: a key that has a port elsewhere in the fleet asks for exactly that one next.
  for (let round = 0; round < 2; round++) {
    try {
      return found(
        await acquire(target, async (candidate) => {
          const answer = await agreed(candidate, candidate === own);
          if (answer === 'taken') return false;
          if (answer === 'unreachable') throw new ClaimStop(undefined);
          if (answer !== 'granted') throw new ClaimStop(answer.elsewhere);
          return true;
        }),
      );
    } catch (err) {
      if (!(err instanceof ClaimStop)) throw err;
      if (err.elsewhere === undefined) return { ok: false, why: 'unreachable' };
      target = err.elsewhere;
    }
  }
  return { ok: false, why: 'full' };
}
