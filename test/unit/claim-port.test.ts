import { test } from 'node:test';
import assert from 'node:assert/strict';
import { claimPort } from '../../src/leases/claim-port.js';
import { OutOfFdsError } from '../../src/errors.js';
import { noLeaseStore, type ClaimAnswer, type LeaseStore } from '../../src/leases/lease-store.js';
import { PortPool } from '../../src/leases/port-pool.js';
import { ManualClock } from '../helpers/clock.js';

/** A fleet's agreement kept in a map: what etcd's transaction decides, without etcd. */
function fleetOf(assigned: Map<number, string>, reachable = () => true): LeaseStore & { asked: number[] } {
  const asked: number[] = [];
  return {
    ...noLeaseStore,
    asked,
    claim: async (key: string, port: number, known: boolean): Promise<ClaimAnswer> => {
      asked.push(port);
      if (!reachable()) return known ? 'granted' : 'unreachable';
      for (const [held, owner] of assigned) if (owner === key) return held === port ? 'granted' : { elsewhere: held };
      if (assigned.has(port)) return 'taken';
      assigned.set(port, key);
      return 'granted';
    },
  };
}

const listen = async (): Promise<boolean> => true;

test('claimPort: without a fleet the pool decides alone', async () => {
  const pool = new PortPool({ first: 100, last: 102 }, new ManualClock());
  assert.deepEqual(await claimPort(pool, noLeaseStore, listen, undefined, 'a'), { ok: true, port: 100 });
});

test('claimPort: ports another key holds fleet-wide are skipped', async () => {
  const pool = new PortPool({ first: 100, last: 105 }, new ManualClock());
  const fleet = fleetOf(
    new Map([
      [100, 'x'],
      [101, 'y'],
    ]),
  );
  assert.deepEqual(await claimPort(pool, fleet, listen, undefined, 'a'), { ok: true, port: 102 });
});

test('claimPort: a key with a port elsewhere in the fleet gets exactly that port here', async () => {
  const pool = new PortPool({ first: 100, last: 105 }, new ManualClock());
  const fleet = fleetOf(new Map([[104, 'a']]));
  assert.deepEqual(await claimPort(pool, fleet, listen, 101, 'a'), { ok: true, port: 104 });
  assert.deepEqual(fleet.asked, [101, 104]);
});

test('claimPort: etcd unreachable refuses a new key but keeps a known key on its own port', async () => {
  const clock = new ManualClock();
  const pool = new PortPool({ first: 100, last: 105 }, clock);
  let up = true;
  const fleet = fleetOf(new Map(), () => up);
  assert.deepEqual(await claimPort(pool, fleet, listen, undefined, 'a'), { ok: true, port: 100 });
  pool.release(100, 'a', 60_000);
  up = false;
  assert.deepEqual(await claimPort(pool, fleet, listen, undefined, 'b'), { ok: false, why: 'unreachable' });
  assert.deepEqual(await claimPort(pool, fleet, listen, undefined, 'a'), { ok: true, port: 100 }, 'its reservation here is enough');
});

test('claimPort: a full range is "full", and a listen out of descriptors stops the search as "fds", evicting nothing', async () => {
  const clock = new ManualClock();
  const pool = new PortPool({ first: 100, last: 101 }, clock);
  const taken = async (): Promise<boolean> => false;
  assert.deepEqual(await claimPort(pool, noLeaseStore, taken, undefined, 'a'), { ok: false, why: 'full' });
  pool.reserve(100, 'someone', clock.now() + 60_000);
  let tried = 0;
  const outOfFds = async (): Promise<boolean> => {
    tried++;
    throw new OutOfFdsError();
  };
  assert.deepEqual(await claimPort(pool, noLeaseStore, outOfFds, undefined, 'b'), { ok: false, why: 'fds' });
  assert.equal(tried, 1, 'the search stops at the first listen that found no descriptor');
  assert.equal(pool.isReserved(100), true, "another key's reservation is not released to look further");
});
