import type { LeaseStore } from '../leases/lease-store.js';
import { formatMessage } from '../protocol/format.js';
import type { Registrar } from './registrar.js';

/**
 * What a fleet's lease store tells this relay, acted on: the fleet's nodes changed
 * (each service that listed both `fleet` and `nodes` is sent NODES), or a key lost its port to
 * an older assignment is no longer served on it here (its service, told REJOIN if it
 * understands it, registers again and gets another port; its door closes, resetting
 * the clients held there).
 */
export function followFleet(store: LeaseStore, registrar: Registrar): void {
  store.follow?.({
    lost: (key, port) => {
      const session = [...registrar.services].find((service) => service.key === key && service.place === port);
      const reason = 'the fleet gives its port to an older registration';
      if (session !== undefined) return session.close(reason, session.features.has('rejoin') ? formatMessage({ kind: 'REJOIN' }) : undefined, 'left');
      if (registrar.ports.pool.reservedPortOf(key) === port || (typeof port === 'string' && registrar.ports.nameHolder(port) === key)) registrar.ports.left(port);
    },
    nodes: (nodes) => {
      for (const session of registrar.services) if (session.features.has('fleet') && session.features.has('nodes')) session.notify({ kind: 'NODES', nodes });
    },
  });
}
