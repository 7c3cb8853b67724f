/**
 * An async reader/writer lock with FIFO fairness: a waiting writer blocks
 * readers that arrive after it, so a sync is never starved by I/O.
 *
 * @module
 */

type Waiter = { exclusive: boolean; resolve: () => void };

/**
 * A reader/writer lock.
 *
 * @example Usage
 * ```ts
 * import { RwLock } from "./rw_lock.ts";
 * const lock = new RwLock();
 * const release = await lock.acquire(false);
 * release();
 * ```
 */
export class RwLock {
  #readers = 0;
  #writer = false;
  #queue: Waiter[] = [];

  /** True when nobody holds or waits for the lock. */
  get idle(): boolean {
    return this.#readers === 0 && !this.#writer && this.#queue.length === 0;
  }

  /**
   * True when a reader could enter at once: nobody holds the lock
   * exclusively or waits for it. Work done synchronously while this holds
   * runs as if under a shared hold, without taking one.
   */
  get readableNow(): boolean {
    return !this.#writer && this.#queue.length === 0;
  }

  /** Acquires shared (`exclusive` false) or exclusive access; resolves to a release function. */
  acquire(exclusive: boolean): Promise<() => void> {
    if (this.#queue.length === 0 && this.#canEnter(exclusive)) {
      this.#enter(exclusive);
      return Promise.resolve(this.#releaser(exclusive));
    }
    return new Promise((resolve) => {
      this.#queue.push({ exclusive, resolve: () => resolve(this.#releaser(exclusive)) });
    });
  }

  /** Runs `fn` holding the lock. */
  async with<T>(exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(exclusive);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  #canEnter(exclusive: boolean): boolean {
    return exclusive ? !this.#writer && this.#readers === 0 : !this.#writer;
  }

  #enter(exclusive: boolean): void {
    if (exclusive) this.#writer = true;
    else this.#readers++;
  }

  #releaser(exclusive: boolean): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (exclusive) this.#writer = false;
      else this.#readers--;
      this.#drain();
    };
  }

  #drain(): void {
    while (this.#queue.length > 0 && this.#canEnter(this.#queue[0]!.exclusive)) {
      const waiter = this.#queue.shift()!;
      this.#enter(waiter.exclusive);
      waiter.resolve();
    }
  }
}

/** One {@linkcode RwLock} per key, created on demand and dropped when idle. */
export class KeyedRwLock {
  #locks = new Map<number, RwLock>();

  /** Runs `fn` holding the lock of `key`. */
  async with<T>(key: number, exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    let lock = this.#locks.get(key);
    if (!lock) {
      lock = new RwLock();
      this.#locks.set(key, lock);
    }
    const release = await lock.acquire(exclusive);
    try {
      return await fn();
    } finally {
      release();
      if (lock.idle) this.#locks.delete(key);
    }
  }

  /** {@linkcode RwLock.readableNow} of the lock of `key`. */
  readableNow(key: number): boolean {
    return this.#locks.get(key)?.readableNow ?? true;
  }

  /** Whether nobody holds or waits for the lock of `key`: a writer could enter at once. */
  idle(key: number): boolean {
    return this.#locks.get(key)?.idle ?? true;
  }

  /** Keys with a holder or a waiter (bounded by the requests in flight). */
  get size(): number {
    return this.#locks.size;
  }
}
