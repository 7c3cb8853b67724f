/**
 * A counting semaphore with first-come, first-served waiters: the server's
 * bound on requests in flight and on bytes it holds in memory.
 *
 * @module
 */
import { assert } from "../assert.ts";

/**
 * A capacity of units (requests, bytes) taken and given back. A waiter is
 * served only when every earlier waiter has been, so a large request is not
 * starved by a stream of small ones.
 *
 * @example Usage
 * ```ts
 * import { Budget } from "./budget.ts";
 * const bytes = new Budget(100);
 * await bytes.acquire(60);
 * const later = bytes.acquire(60); // waits
 * bytes.release(60);
 * await later;
 * if (bytes.available !== 40) throw new Error("wrong accounting");
 * ```
 */
export class Budget {
  /** Units in total. */
  readonly capacity: number;
  #available: number;
  #waiters: { units: number; resolve: () => void }[] = [];

  /** Creates a budget of `capacity` units, all free. */
  constructor(capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, `bad capacity ${capacity}`);
    this.capacity = capacity;
    this.#available = capacity;
  }

  /** Units not taken. */
  get available(): number {
    return this.#available;
  }

  /** Units taken. */
  get used(): number {
    return this.capacity - this.#available;
  }

  /** Waiters queued. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Takes `units` now if no one waits and they are free; false otherwise. */
  tryAcquire(units: number): boolean {
    this.#check(units);
    if (this.#waiters.length > 0 || this.#available < units) return false;
    this.#available -= units;
    return true;
  }

  /** Takes `units`, waiting behind earlier waiters until they are free. */
  acquire(units: number): Promise<void> {
    if (this.tryAcquire(units)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ units, resolve }));
  }

  /** Gives back `units` taken earlier and wakes waiters in order. */
  release(units: number): void {
    assert(units >= 0 && this.#available + units <= this.capacity, `over-release of ${units}`);
    this.#available += units;
    while (this.#waiters.length > 0 && this.#waiters[0]!.units <= this.#available) {
      const waiter = this.#waiters.shift()!;
      this.#available -= waiter.units;
      waiter.resolve();
    }
  }

  #check(units: number): void {
    assert(
      Number.isSafeInteger(units) && units >= 0 && units <= this.capacity,
      `cannot take ${units} of ${this.capacity}`,
    );
  }
}
