/**
 * Keeps the C heap of torusd (and of `torusblk nbdserve`) from holding
 * memory it no longer uses.
 *
 * Array buffers (NBD payloads and replies, peer frames, slabs) live in the C
 * heap, and glibc gives a thread that finds the heap busy an arena of its
 * own (up to eight per core), each keeping the chunks freed into it. Over a
 * benchmark of three rounds torusd's RSS peaked at 366–455 MiB with 19 MiB of
 * live JavaScript objects (`Documentation/benchmarks.md`, session 12). This
 * module caps the arenas (`mallopt(M_ARENA_MAX)`: threads that already have
 * one keep it, later ones share) and hands free memory back to the kernel
 * now and then (`malloc_trim`, on a thread of the runtime's pool, so the
 * event loop does not wait for it).
 *
 * Both calls are glibc's. Elsewhere (musl, or no FFI permission) nothing is
 * tuned and torusd runs as it would without this module.
 *
 * @module
 */
import type { Clock } from "../clock.ts";

/** Arenas the C heap may have, at most (glibc's default is eight per core). */
export const MALLOC_ARENAS_MAX = 2;
/** Milliseconds between two returns of free C heap memory to the kernel. */
export const MALLOC_TRIM_INTERVAL_MS = 10_000;
/** glibc's `mallopt` parameter number of the arena cap. */
const M_ARENA_MAX = -8;

const SYMBOLS = {
  mallopt: { parameters: ["i32", "i32"], result: "i32" },
  malloc_trim: { parameters: ["usize"], result: "i32", nonblocking: true },
} as const;

/** What tuning was applied, for the log. */
export type MallocTuningOutcome = "tuned" | "unavailable";

/**
 * Caps glibc's arenas and trims the C heap every
 * {@linkcode MALLOC_TRIM_INTERVAL_MS} until {@linkcode MallocTuning.stop}.
 *
 * @example Usage
 * ```ts ignore
 * const tuning = MallocTuning.start(new SystemClock());
 * // ... serve ...
 * await tuning.stop();
 * ```
 */
export class MallocTuning {
  /** Whether glibc took the settings. */
  readonly outcome: MallocTuningOutcome;
  #library: Deno.DynamicLibrary<typeof SYMBOLS> | null;
  #clock: Clock;
  #timer = 0;
  #trimming: Promise<unknown> | null = null;
  #stopped = false;
  /** Trims run so far. */
  trims = 0;

  private constructor(library: Deno.DynamicLibrary<typeof SYMBOLS> | null, clock: Clock) {
    this.#library = library;
    this.#clock = clock;
    this.outcome = library === null ? "unavailable" : "tuned";
  }

  /** Applies the arena cap and starts the periodic trim; never throws. */
  static start(clock: Clock, libraryPath = "libc.so.6"): MallocTuning {
    let library: Deno.DynamicLibrary<typeof SYMBOLS> | null = null;
    try {
      library = Deno.dlopen(libraryPath, SYMBOLS);
      // 1 on success; 0 where the parameter is unknown (not glibc's allocator).
      if (library.symbols.mallopt(M_ARENA_MAX, MALLOC_ARENAS_MAX) !== 1) {
        library.close();
        library = null;
      }
    } catch {
      // No such library or symbol, or no FFI permission: leave the heap as it is.
      library = null;
    }
    const tuning = new MallocTuning(library, clock);
    tuning.#schedule();
    return tuning;
  }

  /**
   * Returns free C heap memory to the kernel now; a call while a trim runs
   * waits for that one (so that {@linkcode stop} has one call to wait for
   * before it closes the library).
   */
  async trim(): Promise<void> {
    if (this.#library === null || this.#stopped) return;
    if (this.#trimming !== null) {
      await this.#trimming;
      return;
    }
    const trimming = this.#library.symbols.malloc_trim(0n);
    this.#trimming = trimming;
    try {
      await trimming;
      this.trims++;
    } finally {
      this.#trimming = null;
    }
  }

  /** Stops trimming; resolves once a trim in progress is over. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#clock.clearTimer(this.#timer);
    await this.#trimming?.catch(() => {});
    this.#library?.close();
    this.#library = null;
  }

  #schedule(): void {
    if (this.#library === null || this.#stopped) return;
    this.#timer = this.#clock.setTimer(MALLOC_TRIM_INTERVAL_MS, () => {
      this.trim().catch(() => {}).finally(() => this.#schedule());
    });
  }
}
