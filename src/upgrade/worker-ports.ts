import type { ListeningPorts } from './messages.js';

/*
 * Which ports a new worker must ask the master for, so that it gets the sockets its
 * predecessor had: the master keys them by the port asked for, not the port bound.
 */

/**
 * A successor (an upgrade): a single worker asks as its predecessor was told to. One of
 * several keeps its own data and metrics ports, and asks for the control port as
 * configured, under which its siblings hold that socket.
 */
export function successorPorts(workers: number, old: { ports: ListeningPorts; pinned: ListeningPorts | undefined }): ListeningPorts | undefined {
  if (workers === 1) return old.pinned;
  const { data, metrics } = old.ports;
  return { control: 0, data, ...(metrics === undefined ? {} : { metrics }) };
}

/**
 * A replacement for a worker that died: every port it had, but the control port as
 * configured while a sibling still holds that socket (`shared`); with none left the
 * master closed it, and a port 0 would be a new one.
 */
export function replacementPorts(last: ListeningPorts | undefined, shared: boolean): ListeningPorts | undefined {
  return last === undefined || !shared ? last : { ...last, control: 0 };
}
