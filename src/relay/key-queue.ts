/**
 * Runs the registrations of one key one after another: two HELLOs with the same key
 * that arrive together would otherwise both find no registration and no lease for it,
 * and claim two ports. The second now starts once the first has its port, and so
 * supersedes it (or, for a pool key, joins it). Keys that differ never wait for each other.
 */
export class KeyQueue {
  readonly #tails = new Map<string, Promise<void>>();

  async run(key: string, step: () => Promise<void>): Promise<void> {
    const before = this.#tails.get(key) ?? Promise.resolve();
    const mine = before.then(step);
    // The next one waits for this one to end, however it ends.
    const tail = mine.catch(() => undefined);
    this.#tails.set(key, tail);
    try {
      await mine;
    } finally {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}
