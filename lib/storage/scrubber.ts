/**
 * Scrubbing: reading every block a store holds, whole, so that its sector
 * checksums are verified before a client needs the data. A read already
 * refuses a corrupt sector (`BlockCorruptError`, never wrong bytes), but only
 * when some client reads it; bit rot in a block nobody reads for months
 * would otherwise be found when it is too late to do anything about it
 * (another copy lost meanwhile, a backup rotated out).
 *
 * A {@linkcode Scrubber} works through a snapshot of the store's refs in
 * batches of {@linkcode SCRUB_BATCH_BYTES}, and its {@linkcode Scrubber.run}
 * loop paces them to a rate in bytes per second, then rests
 * {@linkcode SCRUB_REST_MS} between passes. A block that fails its check is
 * read once more after {@linkcode SCRUB_RECHECK_DELAY_MS} before it counts
 * as corrupt; it is then logged by ref and counted for `/metrics`. With a
 * `repair` (a cluster's storage node: another peer's good copy) it is
 * rewritten; without one, or when no good copy exists, the store is not
 * changed: reads keep refusing it (and, in a cluster, read another copy).
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { type BlockRef, BlockType } from "../core/block_ref.ts";
import { BlockCorruptError, BlockNotFoundError, ClosedError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { BlockStore } from "./block_store.ts";

/** Default scrub rate, in bytes per second: a 100 GiB store takes about 3.5 hours a pass. */
export const SCRUB_BYTES_PER_SECOND_DEFAULT = 8 * 1024 * 1024;
/** Bytes of blocks one batch reads before the pacing pause. */
export const SCRUB_BATCH_BYTES = 4 * 1024 * 1024;
/** Pause after a whole pass before the next, in milliseconds. */
export const SCRUB_REST_MS = 60 * 60 * 1000;
/** Delay before a block that failed its check is read again, in milliseconds. */
export const SCRUB_RECHECK_DELAY_MS = 100;
/** Corrupt refs kept for {@linkcode ScrubStatus.recentCorrupt}. */
export const SCRUB_RECENT_CORRUPT_MAX = 16;

/** Options of a {@linkcode Scrubber}. */
export interface ScrubberOptions {
  store: BlockStore;
  clock: Clock;
  logger: Logger;
  /** Pace of {@linkcode Scrubber.run}, in bytes per second (default {@linkcode SCRUB_BYTES_PER_SECOND_DEFAULT}). */
  bytesPerSecond?: number;
  /**
   * Rewrites a corrupt block from a good copy elsewhere; resolves to where
   * it came from, or null when there was none. Absent: corrupt blocks stay.
   */
  repair?: (ref: BlockRef) => Promise<string | null>;
}

/** What one {@linkcode Scrubber.batch} did. */
export interface ScrubBatch {
  /** Blocks read and found intact. */
  checkedBlocks: number;
  /** Blocks that failed their check twice (repaired or not). */
  corruptBlocks: number;
  /** Of those, blocks rewritten from a good copy. */
  repairedBlocks: number;
  /** Blocks that could not be read for another reason (logged). */
  failedBlocks: number;
  /** Bytes read. */
  bytes: number;
  /** True when this batch finished a pass over the store. */
  passDone: boolean;
}

/** Totals since the scrubber was created (`/metrics`). */
export interface ScrubStatus {
  /** Passes finished. */
  passes: number;
  /** Blocks checked, in all passes. */
  checkedBlocks: number;
  /** Corrupt blocks found, in all passes (a block still corrupt is found again each pass). */
  corruptBlocks: number;
  /** Of those, blocks rewritten from a good copy. */
  repairedBlocks: number;
  /** Blocks that could not be read for another reason. */
  failedBlocks: number;
  /** Bytes read. */
  bytes: number;
  /** Blocks of the pass running now, and how many of them are done. */
  passBlocks: number;
  passDoneBlocks: number;
  /** When the last pass finished, in ms since the epoch (0: never). */
  lastPassFinishMs: number;
  /**
   * Corrupt blocks left unrepaired by the last pass that left any, described
   * by {@linkcode describeRef} (at most {@linkcode SCRUB_RECENT_CORRUPT_MAX}).
   */
  recentCorrupt: string[];
}

/** A block named for people: volume id, INode and index, and whether it holds an INode. */
export function describeRef(ref: BlockRef): string {
  return `${
    ref.type === BlockType.inode ? "INode " : ""
  }block ${ref.index} of INode ${ref.inode} of volume id ${ref.volume}`;
}

/**
 * Verifies a store's blocks, a batch at a time.
 *
 * @example Usage
 * ```ts ignore
 * const scrubber = new Scrubber({ store, clock, logger });
 * const stopped = scrubber.run(); // paced, until stop()
 * // ... later
 * scrubber.stop();
 * await stopped;
 * ```
 */
export class Scrubber {
  #store: BlockStore;
  #clock: Clock;
  #logger: Logger;
  #bytesPerSecond: number;
  #repair: ((ref: BlockRef) => Promise<string | null>) | undefined;
  #pass: { refs: BlockRef[]; next: number; corrupt: string[] } | null = null;
  #status: ScrubStatus = {
    passes: 0,
    checkedBlocks: 0,
    corruptBlocks: 0,
    repairedBlocks: 0,
    failedBlocks: 0,
    bytes: 0,
    passBlocks: 0,
    passDoneBlocks: 0,
    lastPassFinishMs: 0,
    recentCorrupt: [],
  };
  /** Reused for every read: one block. */
  #buffer: Uint8Array;
  #stopping = false;
  #wake: () => void = () => {};

  /** @throws {RangeError} when `bytesPerSecond` is not positive. */
  constructor(options: ScrubberOptions) {
    const rate = options.bytesPerSecond ?? SCRUB_BYTES_PER_SECOND_DEFAULT;
    if (!(rate > 0 && Number.isFinite(rate))) {
      throw new RangeError(
        `The scrub rate must be a positive number of bytes per second, got ${rate}`,
      );
    }
    this.#store = options.store;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#bytesPerSecond = rate;
    this.#repair = options.repair;
    this.#buffer = new Uint8Array(options.store.blockSizeBytes);
  }

  /** A copy of the totals. */
  status(): ScrubStatus {
    return { ...this.#status, recentCorrupt: [...this.#status.recentCorrupt] };
  }

  /**
   * Checks the next blocks of the current pass (starting one over a snapshot
   * of the store's refs when none runs), up to {@linkcode SCRUB_BATCH_BYTES}.
   * Blocks deleted since the snapshot are skipped.
   */
  async batch(): Promise<ScrubBatch> {
    const store = this.#store;
    const pass = this.#pass ??= { refs: store.blockRefs(), next: 0, corrupt: [] };
    this.#status.passBlocks = pass.refs.length;
    const report: ScrubBatch = {
      checkedBlocks: 0,
      corruptBlocks: 0,
      repairedBlocks: 0,
      failedBlocks: 0,
      bytes: 0,
      passDone: false,
    };
    while (pass.next < pass.refs.length && report.bytes < SCRUB_BATCH_BYTES) {
      const ref = pass.refs[pass.next++]!;
      const outcome = await this.#check(ref);
      if (outcome === "gone") continue;
      report.bytes += store.blockSizeBytes;
      if (outcome === "ok") report.checkedBlocks++;
      else if (outcome === "failed") report.failedBlocks++;
      else {
        report.corruptBlocks++;
        if (await this.#repaired(ref)) report.repairedBlocks++;
        else if (pass.corrupt.length < SCRUB_RECENT_CORRUPT_MAX) {
          pass.corrupt.push(describeRef(ref));
        }
      }
    }
    const status = this.#status;
    status.checkedBlocks += report.checkedBlocks;
    status.corruptBlocks += report.corruptBlocks;
    status.repairedBlocks += report.repairedBlocks;
    status.failedBlocks += report.failedBlocks;
    status.bytes += report.bytes;
    status.passDoneBlocks = pass.next;
    if (pass.next >= pass.refs.length) {
      report.passDone = true;
      status.passes++;
      status.lastPassFinishMs = this.#clock.nowMs();
      if (pass.corrupt.length > 0) status.recentCorrupt = pass.corrupt;
      this.#pass = null;
    }
    return report;
  }

  /** Checks one block: read whole, and once more after a pause if it fails. */
  async #check(ref: BlockRef): Promise<"ok" | "corrupt" | "failed" | "gone"> {
    for (let attempt = 1;; attempt++) {
      try {
        await this.#store.readBlock(ref, undefined, undefined, this.#buffer);
        return "ok";
      } catch (error) {
        if (error instanceof BlockNotFoundError) return "gone";
        if (error instanceof ClosedError) throw error;
        if (!(error instanceof BlockCorruptError)) {
          this.#logger.log(
            "warn",
            `scrub: cannot read ${describeRef(ref)}: ${(error as Error).message}`,
          );
          return "failed";
        }
        if (attempt === 2) return "corrupt";
      }
      await this.#clock.sleep(SCRUB_RECHECK_DELAY_MS);
    }
  }

  /** Rewrites a corrupt block when there is a repair and a good copy; logs what happened. */
  async #repaired(ref: BlockRef): Promise<boolean> {
    const what = `scrub: ${describeRef(ref)} is corrupt`;
    if (this.#repair !== undefined) {
      let from: string | null;
      try {
        from = await this.#repair(ref);
      } catch (error) {
        if (error instanceof ClosedError) throw error;
        this.#logger.log("warn", `${what}; repairing it failed: ${(error as Error).message}`);
        from = null;
      }
      if (from !== null) {
        this.#logger.log("warn", `${what}; rewrote it from the copy of ${from}`);
        return true;
      }
    }
    this.#logger.log(
      "error",
      `${what}; reads of it fail rather than return wrong bytes` +
        (this.#repair === undefined
          ? ""
          : " (no peer had a good copy; reads go to another copy where one exists)"),
    );
    return false;
  }

  /**
   * Scrubs until {@linkcode Scrubber.stop}: batches paced to the rate, a rest
   * of {@linkcode SCRUB_REST_MS} after each pass. Resolves once stopped; a
   * failed batch is logged and retried after the pause.
   */
  async run(): Promise<void> {
    while (!this.#stopping) {
      const startMs = this.#clock.nowMs();
      let pauseMs: number;
      try {
        const report = await this.batch();
        const paceMs = (report.bytes / this.#bytesPerSecond) * 1000;
        pauseMs = report.passDone
          ? SCRUB_REST_MS
          : Math.max(0, paceMs - (this.#clock.nowMs() - startMs));
      } catch (error) {
        if (error instanceof ClosedError || this.#stopping) break;
        this.#logger.log("warn", `scrub: ${(error as Error).message}`);
        pauseMs = SCRUB_REST_MS;
      }
      if (this.#stopping) break;
      await new Promise<void>((resolve) => {
        const timer = this.#clock.setTimer(pauseMs, resolve);
        this.#wake = () => {
          this.#clock.clearTimer(timer);
          resolve();
        };
      });
      this.#wake = () => {};
    }
  }

  /**
   * Runs one whole pass at once, unpaced (`torusctl scrub`), finishing the
   * pass in progress if there is one; returns the totals.
   */
  async pass(): Promise<ScrubStatus> {
    while (!(await this.batch()).passDone) {
      // Batches until the pass is done.
    }
    return this.status();
  }

  /** Ends {@linkcode Scrubber.run} after the batch in progress, if any. */
  stop(): void {
    this.#stopping = true;
    this.#wake();
  }
}
