import type { Worker } from 'node:cluster';
import type { Socket } from 'node:net';
import { WorkerFailedError } from '../errors.js';
import { passSocketOn } from '../net/hand-over.js';
import { isFromWorker, type FromWorker, type ToWorker } from './messages.js';

/*
 * The master's side of its IPC channel to one worker. The master passes messages and
 * sockets along and waits for a worker's next step; it reads nothing else.
 */

/** Dropped when the worker is gone: its 'exit' tells the master the rest. */
export function send(worker: Worker, msg: ToWorker): void {
  if (worker.isConnected()) worker.send(msg);
}

/**
 * Passes a public client or dial-back on to `to` without reading a byte of it; one that
 * nobody can take is reset, never closed with a FIN.
 */
export function forward(to: Worker | undefined, msg: ToWorker, socket: Socket | undefined): void {
  if (socket === undefined) return;
  passSocketOn(socket, to === undefined || !to.isConnected() ? undefined : (handle, sent) => to.send(msg, handle, sent));
}

/** The next message of that kind from the worker; rejects if it exits or takes longer than ms. */
export function expect<K extends FromWorker['kind']>(worker: Worker, kind: K, ms: number, killOnTimeout = true): Promise<Extract<FromWorker, { kind: K }>> {
  const stage = kind === 'prepared' ? 'prepared for the upgrade' : 'ready';
  return new Promise((resolve, reject) => {
    const onMessage = (msg: unknown): void => {
      if (!isFromWorker(msg) || msg.kind !== kind) return;
      settle();
      resolve(msg as Extract<FromWorker, { kind: K }>);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      settle();
      reject(new WorkerFailedError(`worker ${worker.process.pid} exited (${code ?? signal}) before it was ${stage}`, code ?? 1));
    };
    const timer = setTimeout(() => {
      settle();
      if (killOnTimeout) worker.process.kill('SIGKILL');
      reject(new WorkerFailedError(`worker ${worker.process.pid} was not ${stage} within ${ms / 1000} s`, 1));
    }, ms);
    const settle = (): void => {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.once('exit', onExit);
  });
}

/** A pool member's control connection goes to the worker serving its pool (reset when that one is gone). False when `msg` is none. */
export function routeMember(msg: FromWorker, socket: Socket | undefined, serving: readonly (Worker | undefined)[]): boolean {
  if (msg.kind !== 'member') return false;
  forward(serving[msg.slot], { kind: 'member', head: msg.head }, socket);
  return true;
}

/**
 * The master's part in gathering the figures of several workers for the one --metrics
 * listener: a question goes to every other serving worker, each answer to the asker.
 * False when `msg` is none of these.
 */
export function routeFigures(msg: FromWorker, from: Worker, fromSlot: number, serving: readonly (Worker | undefined)[]): boolean {
  if (msg.kind === 'figures-ask') {
    const others = serving.filter((worker, slot): worker is Worker => worker !== undefined && slot !== fromSlot);
    for (const worker of others) send(worker, { kind: 'figures-ask', id: msg.id, from: fromSlot });
    send(from, { kind: 'figures-asked', id: msg.id, count: others.length });
  } else if (msg.kind === 'figures-answer') {
    const asker = serving[msg.to];
    if (asker !== undefined) send(asker, { kind: 'figures-answer', id: msg.id, snapshot: msg.snapshot });
  } else return false;
  return true;
}
