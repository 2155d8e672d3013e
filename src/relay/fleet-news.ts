import type { LeaseStore } from '../leases/lease-store.js';
import { refusalReply } from '../net/lines.js';
import { resetSocket } from '../net/splice.js';
import { formatMessage } from '../protocol/format.js';
import type { Registrar } from './registrar.js';

/**
 * What a fleet's lease store tells this relay, acted on: the fleet's nodes changed
 * (each service that listed both `fleet` and `nodes` is sent NODES), or a key lost its port to
 * an older assignment is no longer served on it here (its service, or each member of its pool, told REJOIN if it
 * understands it, registers again and gets another port; its door closes, resetting
 * the clients held there).
 */
export function followFleet(store: LeaseStore, registrar: Registrar): void {
  store.follow?.({
    lost: (key, port) => {
      // Every member of a pool, or the one registration of a resume key.
      const sessions = [...registrar.services].filter((service) => service.key === key && service.place === port);
      const reason = 'the fleet gives its port to an older registration';
      for (const session of sessions) session.close(reason, session.features.has('rejoin') ? formatMessage({ kind: 'REJOIN' }) : undefined, 'left');
      if (sessions.length > 0) return;
      if (registrar.ports.pool.reservedPortOf(key) === port || (typeof port === 'string' && registrar.ports.nameHolder(port) === key)) registrar.ports.left(port);
    },
    // One of several workers: the key registered at another, which takes its held clients too.
    moved: (key, port) => {
      const session = [...registrar.services].find((service) => service.key === key && service.place === port);
      const farewell = session?.features.has('superseded') === true ? refusalReply('superseded', 'another control connection registered with this resume key') : undefined;
      // The session first: its clients waiting for a dial-back (not read from yet) go back
      // to the door, whose held clients all go over to the worker that serves the key now.
      session?.close('superseded by a registration at another worker', farewell, 'moved');
      registrar.ports.movedAway(port, (client) => (store.handOver === undefined ? resetSocket(client) : store.handOver(port, client)));
    },
    evicted: (key, port) => registrar.ports.evict(port, key),
    nodes: (nodes) => {
      for (const session of registrar.services) if (session.features.has('fleet') && session.features.has('nodes')) session.notify({ kind: 'NODES', nodes });
    },
  });
}
