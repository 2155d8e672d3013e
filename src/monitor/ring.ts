/** The last `capacity` items pushed; older ones are overwritten, so memory stays fixed. */
export class Ring<T> {
  readonly #items: T[] = [];
  readonly #capacity: number;
  #next = 0;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  push(item: T): void {
    if (this.#items.length < this.#capacity) this.#items.push(item);
    else this.#items[this.#next] = item;
    this.#next = (this.#next + 1) % this.#capacity;
  }

  /** Oldest first. */
  toArray(): T[] {
    if (this.#items.length < this.#capacity) return [...this.#items];
    return [...this.#items.slice(this.#next), ...this.#items.slice(0, this.#next)];
  }

  /** Newest first, at most `limit`. */
  newest(limit = this.#capacity): T[] {
    return this.toArray().reverse().slice(0, limit);
  }
}
