/**
 * Timers that can all be cancelled at once: what a registration or a prewarm pool has
 * scheduled must not fire after it was closed.
 */
export class Timers {
  readonly #pending = new Set<NodeJS.Timeout>();

  later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#pending.delete(timer);
      fn();
    }, ms);
    this.#pending.add(timer);
  }

  cancelAll(): void {
    for (const timer of this.#pending) clearTimeout(timer);
    this.#pending.clear();
  }
}
