import cluster, { type Worker } from 'node:cluster';
import { rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { createLogger, type Logger, type LOG_LEVELS } from '../log.js';
import { startedAt } from '../monitor/process-figures.js';
import type { LeaseRecord } from '../leases/lease-store.js';
import type { WorkerFailedError } from '../errors.js';
import { expect, forward, send } from './master-ipc.js';
import { isFromWorker, type FromWorker, type ListeningPorts } from './messages.js';
import { workerEnv, workerExecArgv } from './worker-tuning.js';

/** A new worker must be listening within this, or the upgrade is called off. */
const READY_TIMEOUT_MS = 30_000;
/** The serving worker must stop its state writes and send its leases within this. */
const PREPARE_TIMEOUT_MS = 10_000;
/** Pause before replacing a worker that died, so a crash loop does not spin. */
const RESTART_DELAY_MS = 1_000;
/** More unexpected deaths than this within RESTART_WINDOW_MS and the master gives up. */
const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 60_000;

interface Serving {
  worker: Worker;
  ports: ListeningPorts;
  /**
   * The ports it was told to use instead of its configured port 0s. A successor asks for
   * exactly the same, so the master hands it the same sockets (they are keyed by the
   * port asked for, not the port bound).
   */
  pinned: ListeningPorts | undefined;
}

/**
 * The master process: the one systemd or a container runtime watches. It owns every
 * listening socket (cluster with SCHED_NONE: it binds, the workers accept), runs the
 * relay in a worker, passes stop signals on, and on SIGUSR2 moves the relay onto the
 * code on disk. It runs the old code for ever, so it holds no relay logic at all.
 */
class Master {
  #log: Logger = createLogger({ name: 'relay', level: 'warn', format: 'json' });
  #configured = false;
  #pidFile: string | undefined;
  #current: Serving | undefined;
  readonly #alive = new Set<Worker>();
  /** Old workers draining their tunnels after an upgrade, oldest first. */
  readonly #retiring = new Set<Worker>();
  #upgrading = false;
  #stopSignals = 0;
  #exitCode = 0;
  readonly #restarts: number[] = [];
  /** The ports of the worker that died, so its replacement is found where it was. */
  #lastPorts: ListeningPorts | undefined;

  run(): void {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => this.#stop(signal));
    process.on('SIGUSR2', () => void this.#upgrade());
    // SIGHUP reloads the tenants file; the worker says whether there is one (never the default exit).
    process.on('SIGHUP', () => {
      if (this.#current === undefined) return this.#log.warn('SIGHUP ignored: no worker is serving');
      send(this.#current.worker, { kind: 'reload' });
    });
    this.#spawn([], false).then(
      (serving) => {
        this.#current = serving;
        this.#log.info({ master: process.pid, worker: serving.worker.process.pid }, 'master running: send it SIGUSR2 to upgrade');
      },
      (err: WorkerFailedError) => this.#finish(err.exitCode),
    );
  }

  /** Forks a worker from the code on disk and resolves once it is listening. */
  async #spawn(leases: LeaseRecord[], predecessor: boolean, pinned?: ListeningPorts): Promise<Serving> {
    const worker = cluster.fork(workerEnv());
    this.#alive.add(worker);
    worker.on('message', (msg: unknown, handle: unknown) => this.#onMessage(worker, msg, handle as Socket | undefined));
    worker.once('exit', (code, signal) => this.#exited(worker, code ?? 1, signal));
    worker.on('error', () => {}); // a send to a worker that just died: its 'exit' tells the rest
    const waiting = await expect(worker, 'waiting', READY_TIMEOUT_MS);
    if (!this.#configured) this.#configure(waiting, worker);
    send(worker, { kind: 'start', leases, predecessor, startedAt: Math.round(startedAt * 1000), ...(pinned === undefined ? {} : { ports: pinned }) });
    const ready = await expect(worker, 'ready', READY_TIMEOUT_MS);
    return { worker, ports: ready.ports, pinned };
  }

  /** The first worker parsed the command line: log as it says, and write the pid file. */
  #configure(waiting: Extract<FromWorker, { kind: 'waiting' }>, worker: Worker): void {
    this.#configured = true;
    this.#log = createLogger({ name: 'relay', level: waiting.log.level as (typeof LOG_LEVELS)[number], format: waiting.log.format });
    if (waiting.pidFile === undefined) return;
    try {
      writeFileSync(waiting.pidFile, `${process.pid}\n`);
      this.#pidFile = waiting.pidFile;
    } catch (err) {
      process.stderr.write(`relay: cannot write --pid-file ${waiting.pidFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}\n`);
      send(worker, { kind: 'stop-now', signal: 'none' });
      this.#finish(1);
    }
  }

  #onMessage(from: Worker, msg: unknown, socket: Socket | undefined): void {
    if (!isFromWorker(msg)) return;
    const current = this.#current?.worker;
    // A retiring worker's leases and counters go to the one serving now.
    if ((msg.kind === 'leases' || msg.kind === 'figures') && current !== undefined && current !== from) send(current, msg);
    else if (msg.kind === 'held-client') forward(current === from ? undefined : current, msg, socket);
    else if (msg.kind === 'dial-back') forward(this.#predecessorOf(from), msg, socket);
  }

  /** The worker that served before `worker`: it may own a token that reached `worker`. */
  #predecessorOf(worker: Worker): Worker | undefined {
    const current = this.#current?.worker;
    if (current !== undefined && current !== worker) return current; // handover under way
    return [...this.#retiring].at(-1);
  }

  async #upgrade(): Promise<void> {
    const old = this.#current;
    if (this.#upgrading || old === undefined || this.#stopSignals > 0) {
      const why = this.#upgrading ? 'an upgrade is already in progress' : this.#stopSignals > 0 ? 'the relay is stopping' : 'no worker is serving';
      this.#log.warn(`SIGUSR2 ignored: ${why}`);
      return;
    }
    this.#upgrading = true;
    try {
      await this.#handOver(old);
    } finally {
      this.#upgrading = false;
    }
  }

  /** New worker listening with the leases installed, then the old one retires. */
  async #handOver(old: Serving): Promise<void> {
    const oldPid = old.worker.process.pid;
    this.#log.info({ oldWorker: oldPid }, 'upgrade: starting a new worker from the code on disk');
    let next: Serving;
    try {
      // Not killed if it is slow: it is still the one serving.
      const preparing = expect(old.worker, 'prepared', PREPARE_TIMEOUT_MS, false);
      send(old.worker, { kind: 'prepare' });
      const { leases } = await preparing;
      next = await this.#spawn(leases, true, old.pinned);
    } catch (err) {
      this.#log.error({ reason: (err as Error).message, oldWorker: oldPid }, 'upgrade failed: the old worker keeps serving');
      if (this.#current === old) send(old.worker, { kind: 'abort' });
      else if (this.#current === undefined && this.#stopSignals === 0) void this.#restart();
      return;
    }
    const oldServing = this.#current === old;
    this.#current = next;
    if (next.ports.control !== old.ports.control || next.ports.data !== old.ports.data || next.ports.metrics !== old.ports.metrics) {
      this.#log.warn({ before: old.ports, after: next.ports }, 'upgrade: the new worker listens on other ports (was the configuration changed?)');
    }
    if (oldServing) {
      this.#retiring.add(old.worker);
      send(old.worker, { kind: 'retire' });
    }
    this.#log.info({ worker: next.worker.process.pid, oldWorker: oldPid }, 'upgrade: new worker serving; the old one drains its tunnels');
  }

  #exited(worker: Worker, code: number, signal: string | null): void {
    this.#alive.delete(worker);
    const current = this.#current;
    const pid = worker.process.pid;
    if (this.#retiring.delete(worker)) {
      this.#log.info({ oldWorker: pid, code, signal }, 'old worker exited');
      if (this.#retiring.size === 0 && this.#current !== undefined) send(this.#current.worker, { kind: 'predecessor-gone' });
    } else if (current?.worker === worker) {
      this.#current = undefined;
      this.#exitCode = code;
      this.#lastPorts = current.ports;
      if (this.#stopSignals === 0 && !this.#upgrading) {
        this.#log.error({ worker: pid, code, signal }, `worker died unexpectedly; starting a new one in ${RESTART_DELAY_MS / 1000} s`);
        void this.#restart();
      }
    }
    if (this.#stopSignals > 0 && this.#alive.size === 0) this.#finish(this.#exitCode);
  }

  async #restart(): Promise<void> {
    const now = Date.now();
    this.#restarts.push(now);
    while ((this.#restarts[0] ?? now) < now - RESTART_WINDOW_MS) this.#restarts.shift();
    if (this.#restarts.length > MAX_RESTARTS) {
      this.#log.fatal({ restarts: this.#restarts.length, windowMs: RESTART_WINDOW_MS }, 'worker keeps dying: giving up');
      return this.#finish(this.#exitCode || 1);
    }
    await new Promise((resolve) => setTimeout(resolve, RESTART_DELAY_MS));
    if (this.#stopSignals > 0) return this.#finish(this.#exitCode);
    try {
      this.#current = await this.#spawn([], false, this.#lastPorts);
      this.#log.info({ worker: this.#current.worker.process.pid }, 'worker restarted');
    } catch (err) {
      this.#log.fatal({ reason: (err as Error).message }, 'the restarted worker died before it was ready: exiting');
      this.#finish((err as WorkerFailedError).exitCode ?? 1);
    }
  }

  /** First signal: every worker drains and exits; the second: they exit at once. */
  #stop(signal: NodeJS.Signals): void {
    this.#stopSignals++;
    if (this.#alive.size === 0) return this.#finish(this.#exitCode);
    const kind = this.#stopSignals === 1 ? 'stop' : 'stop-now';
    for (const worker of this.#alive) send(worker, { kind, signal });
  }

  #finish(code: number): void {
    if (this.#pidFile !== undefined) rmSync(this.#pidFile, { force: true });
    process.exit(code);
  }
}

/** Runs the master; the workers are forks of the same program (see src/cli/relay.ts). */
export function runMaster(): void {
  // Round robin (the Linux default) would accept every connection in the master and
  // pass it on: a hop per connection, and a master that must never be busy. With
  // SCHED_NONE the master only binds, and the workers accept on the shared socket.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ execArgv: workerExecArgv() });
  new Master().run();
}
