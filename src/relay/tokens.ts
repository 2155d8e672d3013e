import type { Socket } from 'node:net';
import type { Clock, Timer } from '../clock.js';
import { newToken } from '../protocol/auth.js';

/** A public client waiting for its service to dial back with `DATA <token>`. */
export interface PendingClient<Owner> {
  readonly kind: 'client';
  readonly token: string;
  readonly owner: Owner;
  readonly client: Socket;
  /** Clock time the CONNECT was written (it leaves at the end of that event-loop turn). */
  readonly since: number;
  /** The same moment on the monotonic clock: the timeout and the latency metric count from it. */
  readonly startedAt: number;
}

export type ProbeOutcome = { ok: true; seconds: number } | { ok: false; reason: string };

/** An end-to-end probe waiting for its dial-back; `settle` is told how it ended, once. */
export interface PendingProbe {
  readonly kind: 'probe';
  readonly token: string;
  readonly startedAt: number;
  readonly settle: (outcome: ProbeOutcome) => void;
}

type Pending<Owner> = PendingClient<Owner> | PendingProbe;

/** Whoever a waiting client belongs to (a service session). */
export interface ClientOwner {
  /** The service dialed back for the client: splice them. */
  dialedBack(entry: PendingClient<ClientOwner>, data: Socket, head: Buffer): void;
  /** The dial-back timeout passed first. */
  dialbackExpired(entry: PendingClient<ClientOwner>): void;
}

/**
 * Every token the relay is waiting to see on its data port: the dial-backs of public
 * clients and of end-to-end probes, in one table, so a data connection is matched with
 * one lookup and a probe token can never stand for a client (each entry says which it
 * is). A token is 128 random bits, sent only to the owning service, taken once, and
 * dead after the dial-back timeout: an expired client goes to onClientExpired, an
 * expired probe is settled as failed.
 *
 * Every entry has the same timeout, so the Map's insertion order is also the order
 * they fall due in: one timer, armed for the oldest entry, serves them all, where a
 * timer per client would cost an allocation and three timer calls on every client's path.
 */
export class TokenTable<Owner> {
  readonly #byToken = new Map<string, Pending<Owner>>();
  /** Each owner's waiting clients, so a departing service finds its own without a scan. */
  readonly #byOwner = new Map<Owner, Set<PendingClient<Owner>>>();
  readonly #timeoutMs: number;
  readonly #onClientExpired: (entry: PendingClient<Owner>) => void;
  readonly #clock: Clock;
  #timer: Timer | undefined;

  constructor(timeoutMs: number, onClientExpired: (entry: PendingClient<Owner>) => void, clock: Clock) {
    this.#timeoutMs = timeoutMs;
    this.#onClientExpired = onClientExpired;
    this.#clock = clock;
  }

  /** Tokens waiting now: clients and probes, all services together. */
  get size(): number {
    return this.#byToken.size;
  }

  addClient(owner: Owner, client: Socket): PendingClient<Owner> {
    const clock = this.#clock;
    const entry: PendingClient<Owner> = { kind: 'client', token: newToken(), owner, client, since: clock.now(), startedAt: clock.monotonic() };
    let own = this.#byOwner.get(owner);
    if (own === undefined) this.#byOwner.set(owner, (own = new Set()));
    own.add(entry);
    this.#add(entry);
    return entry;
  }

  addProbe(settle: (outcome: ProbeOutcome) => void): PendingProbe {
    const entry: PendingProbe = { kind: 'probe', token: newToken(), startedAt: this.#clock.monotonic(), settle };
    this.#add(entry);
    return entry;
  }

  /**
   * Single use: a token taken once is gone, whoever presents it next. The timer stays
   * armed for an entry that may be gone: when it fires it finds the next one due,
   * one wasted wake-up per timeout instead of a clearTimeout per client.
   */
  take(token: string): Pending<Owner> | undefined {
    const entry = this.#byToken.get(token);
    if (entry !== undefined) this.#remove(entry);
    return entry;
  }

  /** Takes the client waiting under this token, only if it is this owner's (a pool member's DECLINE). */
  takeClientOf(owner: Owner, token: string): PendingClient<Owner> | undefined {
    const entry = this.#byToken.get(token);
    if (entry?.kind !== 'client' || entry.owner !== owner) return undefined;
    this.#remove(entry);
    return entry;
  }

  /** Clients of this owner waiting now. */
  clientsOf(owner: Owner): number {
    return this.#byOwner.get(owner)?.size ?? 0;
  }

  /**
   * Takes every client this owner is waiting for, oldest first: all of them (it is going
   * away, and is forgotten here), or those `which` picks (a reload denied them).
   */
  takeClientsOf(owner: Owner, which?: (client: Socket) => boolean): PendingClient<Owner>[] {
    const own = [...(this.#byOwner.get(owner) ?? [])].filter((entry) => which === undefined || which(entry.client));
    for (const entry of own) this.#remove(entry);
    if (which === undefined) this.#byOwner.delete(owner);
    return own;
  }

  /** Seconds since the entry was added, on the monotonic clock. */
  secondsWaited(entry: Pending<Owner>): number {
    return (this.#clock.monotonic() - entry.startedAt) / 1000;
  }

  #add(entry: Pending<Owner>): void {
    this.#byToken.set(entry.token, entry);
    if (this.#timer === undefined) this.#armFor(entry);
  }

  #remove(entry: Pending<Owner>): void {
    this.#byToken.delete(entry.token);
    // An owner's set stays while it lasts, even empty (takeClientsOf drops it): a set
    // made and dropped again for every client of a quiet service would cost each of them.
    if (entry.kind === 'client') this.#byOwner.get(entry.owner)?.delete(entry);
  }

  // Node rounds timers down to whole milliseconds from its cached loop time, so this often
  // wakes a fraction early and arms again for 1 ms: one spare wake-up per expiry.
  #armFor(oldest: Pending<Owner>): void {
    const dueIn = Math.max(1, oldest.startedAt + this.#timeoutMs - this.#clock.monotonic());
    this.#timer = this.#clock.setTimeout(() => this.#expireDue(), dueIn);
  }

  #expireDue(): void {
    const now = this.#clock.monotonic();
    const due: Pending<Owner>[] = [];
    for (const entry of this.#byToken.values()) {
      if (now - entry.startedAt < this.#timeoutMs) break;
      due.push(entry);
    }
    for (const entry of due) this.#remove(entry);
    // Armed before the callbacks run, so that a client they add finds the timer armed.
    const next = this.#byToken.values().next();
    this.#timer = undefined;
    if (!next.done) this.#armFor(next.value);
    for (const entry of due) {
      if (entry.kind === 'client') this.#onClientExpired(entry);
      else entry.settle({ ok: false, reason: `no dial-back within ${this.#timeoutMs} ms` });
    }
  }
}
