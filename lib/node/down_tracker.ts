/**
 * When to take a dead node out of the ring on its own ("auto-evict"), as
 * Ceph marks an OSD out after `mon_osd_down_out_interval`: a ring member
 * with no live registration (its lease expired) for
 * {@linkcode AUTO_EVICT_AFTER_MS_DEFAULT} is removed, so that the
 * rebalancers copy its blocks to their new owners and every block gets back
 * to full replication without an operator. Until then, reads and writes go
 * around it (handoff) as they always do.
 *
 * The decision is pure: {@linkcode DownTracker} is fed what each heartbeat
 * saw and answers which member, if any, to evict now. It never evicts when
 * that would leave fewer members than the replication factor (there would
 * be nowhere to copy to), nor while half or more of the members are down
 * (a partition or a mass outage, where moving data makes things worse), and
 * it evicts one member at a time, the longest down first.
 *
 * @module
 */

/** How long a ring member may be down before a storage node evicts it, in milliseconds. */
export const AUTO_EVICT_AFTER_MS_DEFAULT = 10 * 60 * 1000;

/** The ring as the decision needs it. */
export interface RingView {
  /** Member uuids. */
  members: readonly string[];
  /** The configured replication factor. */
  replication: number;
}

/**
 * Remembers since when each ring member has been seen down.
 *
 * @example Usage
 * ```ts
 * import { DownTracker } from "./down_tracker.ts";
 * const tracker = new DownTracker();
 * const ring = { members: ["a", "b", "c"], replication: 2 };
 * tracker.observe(0, ring.members, new Set(["a", "b"]));
 * tracker.observe(60_000, ring.members, new Set(["a", "b"]));
 * console.log(tracker.candidate(60_000, 30_000, ring)); // "c"
 * ```
 */
export class DownTracker {
  /** Members seen down, with when they were first seen so. */
  #downSinceMs = new Map<string, number>();

  /** Records a heartbeat's view: the ring's `members`, and the uuids with a `live` registration. */
  observe(nowMs: number, members: readonly string[], live: ReadonlySet<string>): void {
    for (const uuid of [...this.#downSinceMs.keys()]) {
      if (live.has(uuid) || !members.includes(uuid)) this.#downSinceMs.delete(uuid);
    }
    for (const uuid of members) {
      if (!live.has(uuid) && !this.#downSinceMs.has(uuid)) this.#downSinceMs.set(uuid, nowMs);
    }
  }

  /** Since when `uuid` has been seen down, or undefined while it is up. */
  downSinceMs(uuid: string): number | undefined {
    return this.#downSinceMs.get(uuid);
  }

  /**
   * The member to evict now: down for at least `afterMs`, the longest down
   * first (then by uuid), or null when none may go (see the module doc).
   */
  candidate(nowMs: number, afterMs: number, ring: RingView): string | null {
    const down = ring.members.filter((uuid) => this.#downSinceMs.has(uuid));
    if (down.length === 0) return null;
    if (ring.members.length - 1 < ring.replication) return null;
    if (2 * down.length >= ring.members.length) return null;
    const due = down
      .map((uuid) => ({ uuid, sinceMs: this.#downSinceMs.get(uuid)! }))
      .filter(({ sinceMs }) => nowMs - sinceMs >= afterMs)
      .sort((a, b) => a.sinceMs - b.sinceMs || (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0));
    return due[0]?.uuid ?? null;
  }
}
