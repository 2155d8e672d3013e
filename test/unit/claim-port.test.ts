import { test } from 'node:test';
import assert from 'node:assert/strict';
import { claimPort } from '../../src/leases/claim-port.js';
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
  assert.equal(await claimPort(pool, noLeaseStore, listen, undefined, 'a'), 100);
});

test('claimPort: ports another key holds fleet-wide are skipped', async () => {
  const pool = new PortPool({ first: 100, last: 105 }, new ManualClock());
  const fleet = fleetOf(new Map([[100, 'x'], [101, 'y']]));
  assert.equal(await claimPort(pool, fleet, listen, undefined, 'a'), 102);
});

test('claimPort: a key with a port elsewhere in the fleet gets exactly that port here', async () => {
  const pool = new PortPool({ first: 100, last: 105 }, new ManualClock());
  const fleet = fleetOf(new Map([[104, 'a']]));
  assert.equal(await claimPort(pool, fleet, listen, 101, 'a'), 104);
  assert.deepEqual(fleet.asked, [101, 104]);
});

test('claimPort: etcd unreachable refuses a new key but keeps a known key on its own port', async () => {
  const clock = new ManualClock();
  const pool = new PortPool({ first: 100, last: 105 }, clock);
  let up = true;
  const fleet = fleetOf(new Map(), () => up);
  const port = await claimPort(pool, fleet, listen, undefined, 'a');
  assert.equal(port, 100);
  pool.release(100, 'a', 60_000);
  up = false;
  assert.equal(await claimPort(pool, fleet, listen, undefined, 'b'), 'unreachable');
  assert.equal(await claimPort(pool, fleet, listen, undefined, 'a'), 100, 'its reservation here is enough');
});
