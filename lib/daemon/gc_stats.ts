/**
 * What a daemon's garbage collections cost, for `/metrics`: how many ran and
 * why, how long they took in total and at the longest, and what they freed.
 *
 * A collection started because a write found the store full (trigger
 * `full`) holds that write, and every write behind it, until it ends: its
 * duration is what an operator sees as a stall. Collections on the timer
 * (`interval`) and after a volume's last writer leaves (`close`) hold nobody.
 *
 * @module
 */
import type { GcResult } from "../block/gc.ts";
import type { Clock } from "../clock.ts";
import type { ReclaimReason } from "../file/file.ts";
import type { Logger } from "../log.ts";

/** Why a collection ran: the timer, or a volume's {@linkcode ReclaimReason}. */
export type GcTrigger = "interval" | ReclaimReason;

/** The triggers, in the order `/metrics` lists them. */
export const GC_TRIGGERS: readonly GcTrigger[] = ["interval", "full", "close"];

/** Totals for one trigger. */
export interface GcTriggerTotals {
  /** Collections that finished (ran, were skipped, or failed). */
  runs: number;
  /** Their summed duration, in milliseconds. */
  totalMs: number;
  /** The longest one, in milliseconds. */
  maxMs: number;
}

/** Everything {@linkcode GcStats} counted. */
export interface GcStatsSnapshot {
  byTrigger: Record<GcTrigger, GcTriggerTotals>;
  /** Blocks deleted by all collections. */
  deletedBlocks: number;
  /** Collections that could not mark (metadata unavailable): nothing was deleted. */
  skipped: number;
  /** Collections that failed with an error. */
  failed: number;
}

/** The outcome of one collection, as {@linkcode GcStats.record} takes it. */
export type GcOutcome =
  | { kind: "ran"; deletedBlocks: number }
  | { kind: "skipped" }
  | { kind: "failed" };

/** Totals for every trigger, from `totals(trigger)`. */
function byTrigger(
  totals: (trigger: GcTrigger) => GcTriggerTotals,
): Record<GcTrigger, GcTriggerTotals> {
  return Object.fromEntries(GC_TRIGGERS.map((trigger) => [trigger, totals(trigger)])) as Record<
    GcTrigger,
    GcTriggerTotals
  >;
}

/**
 * Counts collections. Durations come from the caller's clock, so that a test
 * clock gives exact figures.
 *
 * @example Usage
 * ```ts
 * import { GcStats } from "./gc_stats.ts";
 * const stats = new GcStats();
 * stats.record("full", 120, { kind: "ran", deletedBlocks: 7 });
 * const { byTrigger, deletedBlocks } = stats.snapshot();
 * if (byTrigger.full.maxMs !== 120 || deletedBlocks !== 7) throw new Error("miscounted");
 * ```
 */
export class GcStats {
  #byTrigger = byTrigger(() => ({ runs: 0, totalMs: 0, maxMs: 0 }));
  #deletedBlocks = 0;
  #skipped = 0;
  #failed = 0;

  /**
   * Counts one finished collection that took `durationMs` (a negative
   * duration, from a clock set back, counts as 0).
   */
  record(trigger: GcTrigger, durationMs: number, outcome: GcOutcome): void {
    const totals = this.#byTrigger[trigger];
    const ms = Math.max(0, durationMs);
    totals.runs++;
    totals.totalMs += ms;
    totals.maxMs = Math.max(totals.maxMs, ms);
    if (outcome.kind === "ran") this.#deletedBlocks += outcome.deletedBlocks;
    else if (outcome.kind === "skipped") this.#skipped++;
    else this.#failed++;
  }

  /** A copy of the counts. */
  snapshot(): GcStatsSnapshot {
    return {
      byTrigger: byTrigger((trigger) => ({ ...this.#byTrigger[trigger] })),
      deletedBlocks: this.#deletedBlocks,
      skipped: this.#skipped,
      failed: this.#failed,
    };
  }
}

/**
 * Runs one collection with `collect`, counts it in `stats` under `trigger`
 * with its duration by `clock`, and logs what it did: an error or a skip
 * (metadata unavailable) as such, a collection that deleted blocks with its
 * trigger and duration. Never rejects: a failed collection is counted and
 * logged.
 */
export async function runCountedCollection(
  stats: GcStats,
  trigger: GcTrigger,
  { clock, logger }: { clock: Clock; logger: Logger },
  collect: () => Promise<GcResult>,
): Promise<void> {
  const startMs = clock.nowMs();
  let outcome: GcOutcome;
  try {
    const result = await collect();
    outcome = result.ran
      ? { kind: "ran", deletedBlocks: result.deletedBlocks }
      : { kind: "skipped" };
  } catch (error) {
    outcome = { kind: "failed" };
    logger.log("error", `gc failed: ${(error as Error).message}`);
  }
  const ms = clock.nowMs() - startMs;
  stats.record(trigger, ms, outcome);
  if (outcome.kind === "skipped") logger.log("warn", "gc skipped: metadata unavailable");
  else if (outcome.kind === "ran" && outcome.deletedBlocks > 0) {
    logger.log("info", `gc (${trigger}) deleted ${outcome.deletedBlocks} blocks in ${ms} ms`);
  }
}
