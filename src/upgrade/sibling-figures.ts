import type { WorkerSnapshot } from '../monitor/workers-view.js';
import type { FromWorker, ToWorker, WorkerSlot } from './messages.js';

/** A sibling that has not answered within this is left out of the answer (it is busy, or exiting). */
const ANSWER_TIMEOUT_MS = 1_000;

/**
 * With several workers, the one `--metrics` listener (the first worker's) shows the
 * whole relay: for each request it asks every other worker, through the master, for
 * its figures (`snapshot`), and every worker answers such questions from the first.
 */
export class SiblingFigures {
  readonly #siblings: number;
  /** Each question's answers so far, and how many the master asked (once it said). */
  readonly #asked = new Map<number, { answers: WorkerSnapshot[]; expected: number; done: () => void }>();
  #nextId = 1;

  constructor(slot: WorkerSlot, snapshot: () => WorkerSnapshot) {
    this.#siblings = slot.count - 1;
    process.on('message', (msg: ToWorker) => {
      if (msg.kind === 'figures-ask') tell({ kind: 'figures-answer', id: msg.id, to: msg.from, snapshot: snapshot() });
      else if (msg.kind === 'figures-answer') this.#answered(msg.id, msg.snapshot);
      else if (msg.kind === 'figures-asked') this.#expect(msg.id, msg.count);
    });
  }

  /** Every other worker's figures that came within ANSWER_TIMEOUT_MS; never rejects. */
  gather(): Promise<WorkerSnapshot[]> {
    if (this.#siblings === 0 || !process.connected) return Promise.resolve([]);
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const answers: WorkerSnapshot[] = [];
      const done = (): void => {
        clearTimeout(timer);
        this.#asked.delete(id);
        resolve(answers);
      };
      const timer = setTimeout(done, ANSWER_TIMEOUT_MS);
      this.#asked.set(id, { answers, expected: this.#siblings, done });
      tell({ kind: 'figures-ask', id });
    });
  }

  #answered(id: number, snapshot: WorkerSnapshot): void {
    const asked = this.#asked.get(id);
    if (asked === undefined) return;
    asked.answers.push(snapshot);
    if (asked.answers.length >= asked.expected) asked.done();
  }

  /** Fewer workers than slots may be serving (one is being restarted): those are all. */
  #expect(id: number, count: number): void {
    const asked = this.#asked.get(id);
    if (asked === undefined) return;
    asked.expected = count;
    if (asked.answers.length >= count) asked.done();
  }
}

function tell(msg: FromWorker): void {
  if (process.connected) process.send?.(msg);
}
