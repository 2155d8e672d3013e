import cluster, { type Worker } from 'node:cluster';
import { rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { createLogger, type Logger, type LOG_LEVELS } from '../log.js';
import { startedAt } from '../monitor/process-figures.js';
import type { LeaseRecord, Place } from '../leases/lease-store.js';
import { UsageError, type WorkerFailedError } from '../errors.js';
import { expect, forward, routeFigures, routeMember, send } from './master-ipc.js';
import { MasterLeases } from './master-leases.js';
import { isFromWorker, type FromWorker, type ListeningPorts, type ToWorker } from './messages.js';
import { replacementPorts, successorPorts } from './worker-ports.js';
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

/** One worker's place (`--workers N`: N of them), served by one worker at a time except during its upgrade. */
interface Slot {
  index: number;
  current: Serving | undefined;
  /** Old workers draining their tunnels after an upgrade, oldest first. */
  readonly retiring: Set<Worker>;
  /** The ports of the worker that died, so its replacement is found where it was. */
  lastPorts: ListeningPorts | undefined;
}

/**
 * The master process: the one systemd or a container runtime watches. It owns every
 * listening socket (cluster with SCHED_NONE: it binds, the workers accept), runs the
 * relay in one worker or several (`--workers`), passes stop signals on, and on SIGUSR2
 * moves each worker onto the code on disk. It runs the old code for ever, so it holds
 * no relay logic but the lease claims several workers must agree on (master-leases.ts).
 */
class Master {
  #log: Logger = createLogger({ name: 'relay', level: 'warn', format: 'json' });
  #configured = false;
  #pidFile: string | undefined;
  readonly #slots: Slot[] = [];
  readonly #slotOf = new Map<Worker, Slot>();
  readonly #alive = new Set<Worker>();
  #workers = 1;
  /** With several workers: the leases they share. */
  #leases: MasterLeases | undefined;
  #upgrading = false;
  #stopSignals = 0;
  #exitCode = 0;
  readonly #restarts: number[] = [];

  run(): void {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => this.#stop(signal));
    process.on('SIGUSR2', () => void this.#upgrade());
    // SIGHUP reloads the tenants file; the worker says whether there is one (never the default exit).
    process.on('SIGHUP', () => {
      const serving = this.#slots.flatMap((slot) => (slot.current === undefined ? [] : [slot.current.worker]));
      if (serving.length === 0) return this.#log.warn('SIGHUP ignored: no worker is serving');
      for (const worker of serving) send(worker, { kind: 'reload' });
    });
    void this.#startAll();
  }

  /** The first worker reads the command line (how many workers); the others start after it, one at a time. */
  async #startAll(): Promise<void> {
    try {
      for (let index = 0; index < this.#workers && this.#stopSignals === 0; index++) {
        const slot: Slot = { index, current: undefined, retiring: new Set(), lastPorts: undefined };
        this.#slots.push(slot);
        slot.current = await this.#spawn(slot, [], false);
      }
    } catch (err) {
      return this.#finish((err as WorkerFailedError).exitCode ?? 1);
    }
    const workers = this.#slots.map((slot) => slot.current?.worker.process.pid);
    this.#log.info({ master: process.pid, worker: workers[0], ...(workers.length > 1 ? { workers } : {}) }, 'master running: send it SIGUSR2 to upgrade');
  }

  /** Forks a worker from the code on disk and resolves once it is listening. */
  async #spawn(slot: Slot, leases: LeaseRecord[], predecessor: boolean, pinned?: ListeningPorts): Promise<Serving> {
    const worker = cluster.fork(workerEnv());
    this.#alive.add(worker);
    this.#slotOf.set(worker, slot);
    worker.on('message', (msg: unknown, handle: unknown) => this.#onMessage(worker, msg, handle as Socket | undefined));
    worker.once('exit', (code, signal) => this.#exited(worker, code ?? 1, signal));
    worker.on('error', () => {}); // a send to a worker that just died: its 'exit' tells the rest
    const waiting = await expect(worker, 'waiting', READY_TIMEOUT_MS);
    const fromState = this.#configured ? [] : await this.#configure(waiting, worker);
    const many = this.#workers > 1 ? { slot: { index: slot.index, count: this.#workers } } : {};
    const start: ToWorker = { kind: 'start', leases: [...leases, ...fromState], predecessor, startedAt: Math.round(startedAt * 1000), ...many, ...(pinned === undefined ? {} : { ports: pinned }) };
    send(worker, start);
    const ready = await expect(worker, 'ready', READY_TIMEOUT_MS);
    return { worker, ports: ready.ports, pinned };
  }

  /**
   * The first worker parsed the command line: log as it says, write the pid file, and with
   * several workers take the leases over (resolves with the state file's).
   */
  async #configure(waiting: Extract<FromWorker, { kind: 'waiting' }>, worker: Worker): Promise<LeaseRecord[]> {
    this.#configured = true;
    this.#log = createLogger({ name: 'relay', level: waiting.log.level as (typeof LOG_LEVELS)[number], format: waiting.log.format });
    this.#workers = waiting.workers;
    if (waiting.pidFile !== undefined) {
      try {
        writeFileSync(waiting.pidFile, `${process.pid}\n`);
        this.#pidFile = waiting.pidFile;
      } catch (err) {
        this.#refuseStart(worker, `cannot write --pid-file ${waiting.pidFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 1);
      }
    }
    if (this.#workers === 1) return [];
    const tell = (slot: number, msg: ToWorker): void => {
      for (const [other, at] of this.#slotOf) if (at.index === slot) send(other, msg);
    };
    this.#leases = new MasterLeases(waiting.stateFile, waiting.graceMs, this.#log, tell);
    try {
      return await this.#leases.load();
    } catch (err) {
      // An unsafe state file, or another relay's: as a single worker would, one line and exit 2.
      return this.#refuseStart(worker, (err as Error).message, err instanceof UsageError ? 2 : 1);
    }
  }

  #refuseStart(worker: Worker, message: string, code: number): never {
    process.stderr.write(`relay: ${message}\n`);
    send(worker, { kind: 'stop-now', signal: 'none' });
    this.#finish(code);
  }

  #onMessage(from: Worker, msg: unknown, socket: Socket | undefined): void {
    const slot = this.#slotOf.get(from);
    if (!isFromWorker(msg) || slot === undefined) return;
    if (this.#leases?.onMessage(slot.index, msg, (answer) => send(from, answer)) === true) return;
    const serving = this.#slots.map((each) => each.current?.worker);
    if (routeFigures(msg, from, slot.index, serving) || routeMember(msg, socket, serving)) return;
    const current = slot.current?.worker;
    // A retiring worker's leases and counters go to the one serving now.
    if ((msg.kind === 'leases' || msg.kind === 'figures') && current !== undefined && current !== from) send(current, msg);
    else if (msg.kind === 'held-client') forward(this.#heldClientGoesTo(from, slot, msg.port), msg, socket);
    else if (msg.kind === 'dial-back') forward(this.#predecessorOf(slot, from), msg, socket);
  }

  /** The worker that serves the port now (another, when its key moved), else the one that replaces `from`. */
  #heldClientGoesTo(from: Worker, slot: Slot, port: Place): Worker | undefined {
    const owner = this.#leases?.slotOfPort(port);
    if (owner !== undefined && owner !== slot.index) return this.#slots[owner]?.current?.worker;
    const current = slot.current?.worker;
    return current === from ? undefined : current;
  }

  /** The worker that served `slot` before `worker`: it may own a token that reached `worker`. */
  #predecessorOf(slot: Slot, worker: Worker): Worker | undefined {
    const current = slot.current?.worker;
    if (current !== undefined && current !== worker) return current; // handover under way
    return [...slot.retiring].at(-1);
  }

  /** Replaces every worker in turn, each as a single one would be replaced. */
  async #upgrade(): Promise<void> {
    const serving = this.#slots.filter((slot) => slot.current !== undefined);
    if (this.#upgrading || serving.length === 0 || this.#stopSignals > 0) {
      const why = this.#upgrading ? 'an upgrade is already in progress' : this.#stopSignals > 0 ? 'the relay is stopping' : 'no worker is serving';
      this.#log.warn(`SIGUSR2 ignored: ${why}`);
      return;
    }
    this.#upgrading = true;
    try {
      for (const slot of serving) {
        if (this.#stopSignals > 0) break;
        if (slot.current !== undefined) await this.#handOver(slot, slot.current);
      }
    } finally {
      this.#upgrading = false;
    }
  }

  /** New worker listening with the leases installed, then the old one retires. */
  async #handOver(slot: Slot, old: Serving): Promise<void> {
    const oldPid = old.worker.process.pid;
    this.#log.info({ oldWorker: oldPid, ...this.#slotField(slot) }, 'upgrade: starting a new worker from the code on disk');
    let next: Serving;
    try {
      // Not killed if it is slow: it is still the one serving.
      const preparing = expect(old.worker, 'prepared', PREPARE_TIMEOUT_MS, false);
      send(old.worker, { kind: 'prepare' });
      const { leases } = await preparing;
      // A stop signal while the old one prepared: a new worker would miss it and never stop.
      if (this.#stopSignals > 0) throw new Error('the relay is stopping');
      next = await this.#spawn(slot, leases, true, successorPorts(this.#workers, old));
    } catch (err) {
      this.#log.error({ reason: (err as Error).message, oldWorker: oldPid }, 'upgrade failed: the old worker keeps serving');
      if (slot.current === old) send(old.worker, { kind: 'abort' });
      else if (slot.current === undefined && this.#stopSignals === 0) void this.#restart(slot);
      return;
    }
    const oldServing = slot.current === old;
    slot.current = next;
    if (next.ports.control !== old.ports.control || next.ports.data !== old.ports.data || next.ports.metrics !== old.ports.metrics) {
      this.#log.warn({ before: old.ports, after: next.ports }, 'upgrade: the new worker listens on other ports (was the configuration changed?)');
    }
    if (oldServing) {
      slot.retiring.add(old.worker);
      send(old.worker, { kind: 'retire' });
    }
    this.#log.info({ worker: next.worker.process.pid, oldWorker: oldPid }, 'upgrade: new worker serving; the old one drains its tunnels');
  }

  readonly #slotField = (slot: Slot): { slot?: number } => (this.#workers > 1 ? { slot: slot.index } : {});

  #exited(worker: Worker, code: number, signal: string | null): void {
    this.#alive.delete(worker);
    const slot = this.#slotOf.get(worker);
    this.#slotOf.delete(worker);
    const pid = worker.process.pid;
    if (slot === undefined) return;
    const current = slot.current;
    if (slot.retiring.delete(worker)) {
      this.#log.info({ oldWorker: pid, code, signal }, 'old worker exited');
      if (slot.retiring.size === 0 && slot.current !== undefined) send(slot.current.worker, { kind: 'predecessor-gone' });
    } else if (current?.worker === worker) {
      slot.current = undefined;
      this.#exitCode = code;
      slot.lastPorts = current.ports;
      this.#leases?.died(slot.index);
      if (this.#stopSignals === 0 && !this.#upgrading) {
        this.#log.error({ worker: pid, code, signal, ...this.#slotField(slot) }, `worker died unexpectedly; starting a new one in ${RESTART_DELAY_MS / 1000} s`);
        void this.#restart(slot);
      }
    }
    if (this.#stopSignals > 0 && this.#alive.size === 0) this.#finish(this.#exitCode);
  }

  async #restart(slot: Slot): Promise<void> {
    const now = Date.now();
    this.#restarts.push(now);
    while ((this.#restarts[0] ?? now) < now - RESTART_WINDOW_MS) this.#restarts.shift();
    if (this.#restarts.length > MAX_RESTARTS * this.#workers) {
      this.#log.fatal({ restarts: this.#restarts.length, windowMs: RESTART_WINDOW_MS }, 'worker keeps dying: giving up');
      return this.#finish(this.#exitCode || 1);
    }
    await new Promise((resolve) => setTimeout(resolve, RESTART_DELAY_MS));
    if (this.#stopSignals > 0) return this.#finish(this.#exitCode);
    try {
      // A single worker reads the state file itself; one of several gets its share from the master.
      slot.current = await this.#spawn(
        slot,
        this.#leases?.leasesOf(slot.index) ?? [],
        false,
        replacementPorts(
          slot.lastPorts,
          this.#slots.some((other) => other !== slot && other.current !== undefined),
        ),
      );
      this.#log.info({ worker: slot.current.worker.process.pid, ...this.#slotField(slot) }, 'worker restarted');
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

  #finish(code: number): never {
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
