/**
 * Time, injected. Every component that needs the time or a timer takes a
 * {@linkcode Clock}, so that tests and simulations control time and a seeded
 * run can be replayed.
 *
 * @module
 */

/** A source of time and timers. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  nowMs(): number;
  /** Calls `callback` after `delayMs`; returns an id for {@linkcode Clock.clearTimer}. */
  setTimer(delayMs: number, callback: () => void): number;
  /** Cancels a timer set with {@linkcode Clock.setTimer}. */
  clearTimer(id: number): void;
  /** Resolves after `delayMs`. */
  sleep(delayMs: number): Promise<void>;
}

/** The real clock of the machine. */
export class SystemClock implements Clock {
  nowMs(): number {
    return Date.now();
  }
  setTimer(delayMs: number, callback: () => void): number {
    return setTimeout(callback, delayMs) as unknown as number;
  }
  clearTimer(id: number): void {
    clearTimeout(id);
  }
  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

/**
 * A clock that moves only when told to. Timers fire, in order, inside
 * {@linkcode ManualClock.advance}.
 *
 * @example Usage
 * ```ts
 * import { ManualClock } from "./clock.ts";
 * const clock = new ManualClock(1000);
 * let fired = false;
 * clock.setTimer(50, () => fired = true);
 * clock.advance(50);
 * if (!fired || clock.nowMs() !== 1050) throw new Error("clock is wrong");
 * ```
 */
export class ManualClock implements Clock {
  #nowMs: number;
  #nextId = 1;
  #timers = new Map<number, { atMs: number; callback: () => void }>();

  constructor(startMs = 0) {
    this.#nowMs = startMs;
  }
  nowMs(): number {
    return this.#nowMs;
  }
  setTimer(delayMs: number, callback: () => void): number {
    const id = this.#nextId++;
    this.#timers.set(id, { atMs: this.#nowMs + Math.max(0, delayMs), callback });
    return id;
  }
  clearTimer(id: number): void {
    this.#timers.delete(id);
  }
  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => this.setTimer(delayMs, resolve));
  }
  /** Moves time forward by `deltaMs`, firing due timers in time order. */
  advance(deltaMs: number): void {
    const targetMs = this.#nowMs + deltaMs;
    for (;;) {
      let dueId = 0;
      let dueAtMs = Infinity;
      for (const [id, timer] of this.#timers) {
        if (timer.atMs <= targetMs && timer.atMs < dueAtMs) {
          dueId = id;
          dueAtMs = timer.atMs;
        }
      }
      if (dueId === 0) break;
      const timer = this.#timers.get(dueId)!;
      this.#timers.delete(dueId);
      this.#nowMs = dueAtMs;
      timer.callback();
    }
    this.#nowMs = targetMs;
  }
}
