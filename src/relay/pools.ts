import type { ListedService, ServiceFigures, WatchedService } from '../monitor/overview.js';
import type { PoolFigures } from '../monitor/stats.js';
import type { RelayContext } from './context.js';
import type { PublicDoor } from './public-door.js';
import { ServicePool } from './service-pool.js';

/** The pools with at least one member registered now, by lease key (docs/protocol.md §17). */
export class Pools {
  readonly #ctx: RelayContext;
  readonly #byKey = new Map<string, ServicePool>();

  constructor(ctx: RelayContext) {
    this.#ctx = ctx;
  }

  get(key: string): ServicePool | undefined {
    return this.#byKey.get(key);
  }

  /** What --max-services counts of `registrations` control connections: a pool once, however many members it has. */
  services(registrations: number): number {
    let members = 0;
    for (const pool of this.#byKey.values()) members += pool.size;
    return registrations - members + this.#byKey.size;
  }

  /** The key's pool, made now for its first member (`id`, on `door`; `port`: the one its clients reach). */
  poolOf(key: string, id: string, door: PublicDoor, port: number, figures: () => ServiceFigures): ServicePool {
    let pool = this.#byKey.get(key);
    if (pool === undefined) this.#byKey.set(key, (pool = new ServicePool(this.#ctx, { id, key, place: door.place, port, figures: figures() }, door)));
    return pool;
  }

  /**
   * A registration of `key` ended: `last` unless other members of its pool go on (a
   * service of no pool is always the last); a pool whose last member went is forgotten.
   */
  memberGone(key: string): { pool: ServicePool | undefined; last: boolean } {
    const pool = this.#byKey.get(key);
    if (pool === undefined || pool.size > 0) return { pool, last: pool === undefined };
    this.#byKey.delete(key);
    return { pool, last: true };
  }

  listed(): ListedService[] {
    return [...this.#byKey.values()].map((service) => ({ service, held: false }));
  }

  /** Each pool's members by state; a pool away (`away`: the services whose ports are reserved) has none, and says so. */
  figures(away: Iterable<WatchedService>): PoolFigures[] {
    const pools = [...this.#byKey.values(), ...[...away].filter((service): service is ServicePool => service instanceof ServicePool)];
    return pools.map((pool) => pool.figuresByState());
  }
}
