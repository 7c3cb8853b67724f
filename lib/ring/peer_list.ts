/**
 * Helpers shared by the rings: validating members, set operations on member
 * lists that keep order (the stored order is part of a ring), capacity
 * weights, replication and version rules.
 *
 * @module
 */
import { REPLICAS_MAX } from "../constants.ts";
import { AlreadyExistsError, PeerNotFoundError } from "../errors.ts";
import type { RingPeer } from "./ring.ts";

/** What a ring with members is made of (`createRing`, `ModRing`, `KetamaRing`, `SingleRing`). */
export interface RingOptions {
  version: number;
  /** Configured replication factor; 0 means 1. */
  replication: number;
  /** Members, in stored order. */
  peers: readonly RingPeer[];
}

/** Largest ring version: `models.Ring.version` is a uint32. */
export const RING_VERSION_MAX = 0xffff_ffff;

/**
 * Checks and copies a member list: uuids non-empty and distinct, capacities
 * safe non-negative integers. The copies are frozen, so a ring can hand out
 * its members without copying them again.
 *
 * @throws {RangeError} naming the bad member.
 */
export function checkPeers(peers: readonly RingPeer[]): readonly RingPeer[] {
  const seen = new Set<string>();
  return peers.map((peer) => {
    if (typeof peer.uuid !== "string" || peer.uuid.length === 0) {
      throw new RangeError("Cannot use a ring peer without a uuid");
    }
    if (seen.has(peer.uuid)) {
      throw new RangeError(`Cannot use ring peer "${peer.uuid}" twice`);
    }
    seen.add(peer.uuid);
    if (!Number.isSafeInteger(peer.totalBlocks) || peer.totalBlocks < 0) {
      throw new RangeError(
        `Cannot use ring peer "${peer.uuid}": capacity ${peer.totalBlocks} is not a block count`,
      );
    }
    return Object.freeze({ uuid: peer.uuid, totalBlocks: peer.totalBlocks });
  });
}

/**
 * The members of `left` then those of `right` not in `left`, each once, in
 * order (the original's `PeerList.Union`).
 *
 * @example Usage
 * ```ts
 * import { unionUuids } from "./peer_list.ts";
 * const merged = unionUuids(["a", "b"], ["c", "a"]);
 * if (merged.join() !== "a,b,c") throw new Error(merged.join());
 * ```
 */
export function unionUuids(left: readonly string[], right: readonly string[]): string[] {
  const out = [...new Set(left)];
  const seen = new Set(out);
  for (const uuid of right) {
    if (!seen.has(uuid)) {
      seen.add(uuid);
      out.push(uuid);
    }
  }
  return out;
}

/** Like {@linkcode unionUuids} for members: a uuid in both keeps `left`'s entry. */
export function unionPeers(
  left: readonly RingPeer[],
  right: readonly RingPeer[],
): RingPeer[] {
  const seen = new Set<string>();
  const out: RingPeer[] = [];
  for (const peer of [...left, ...right]) {
    if (!seen.has(peer.uuid)) {
      seen.add(peer.uuid);
      out.push(peer);
    }
  }
  return out;
}

/**
 * `current` with the peers of `added` that are not members yet, appended in
 * order.
 *
 * @throws {AlreadyExistsError} when every one of them is a member already.
 */
export function withPeersAdded(
  current: readonly RingPeer[],
  added: readonly RingPeer[],
): RingPeer[] {
  const members = new Set(current.map((peer) => peer.uuid));
  const fresh = added.filter((peer) => !members.has(peer.uuid));
  if (fresh.length === 0) {
    const names = added.map((peer) => `"${peer.uuid}"`).join(", ") || "(none)";
    throw new AlreadyExistsError(`Cannot add peers ${names}: all are ring members already`);
  }
  return unionPeers(current, fresh);
}

/**
 * `current` without the members named in `uuids`, in order.
 *
 * @throws {PeerNotFoundError} when none of them is a member.
 */
export function withPeersRemoved(
  current: readonly RingPeer[],
  uuids: readonly string[],
): RingPeer[] {
  const removed = new Set(uuids);
  const kept = current.filter((peer) => !removed.has(peer.uuid));
  if (kept.length === current.length) {
    const names = uuids.map((uuid) => `"${uuid}"`).join(", ") || "(none)";
    throw new PeerNotFoundError(`Cannot remove peers ${names}: none is a ring member`);
  }
  return kept;
}

/**
 * Placement weights: each capacity divided by the greatest common divisor
 * of all capacities (the original's `GetWeights`), in the order of `peers`.
 * Members of capacity 0 weigh 0; when every capacity is 0, all weigh 1.
 *
 * @example Usage
 * ```ts
 * import { capacityWeights } from "./peer_list.ts";
 * const weights = capacityWeights([
 *   { uuid: "a", totalBlocks: 1000 },
 *   { uuid: "b", totalBlocks: 3000 },
 * ]);
 * if (weights.join() !== "1,3") throw new Error(weights.join());
 * ```
 */
export function capacityWeights(peers: readonly RingPeer[]): number[] {
  const divisor = peers.reduce((g, peer) => gcd(g, peer.totalBlocks), 0);
  if (divisor === 0) return peers.map(() => 1);
  return peers.map((peer) => peer.totalBlocks / divisor);
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * Checks a configured replication factor and applies the original's rule
 * that 0 means 1.
 *
 * @throws {RangeError} outside 0..{@linkcode REPLICAS_MAX}.
 */
export function checkReplication(replication: number): number {
  if (!Number.isInteger(replication) || replication < 0 || replication > REPLICAS_MAX) {
    throw new RangeError(
      `Cannot use replication ${replication}: expected an integer from 1 to ${REPLICAS_MAX}`,
    );
  }
  return Math.max(replication, 1);
}

/**
 * How many members own each block: the configured factor clamped to the
 * member count, so a one-node cluster with replication 2 works degraded
 * (original issues #219, #327) instead of failing every write.
 */
export function effectiveReplication(replication: number, memberCount: number): number {
  return Math.min(Math.max(replication, 1), memberCount);
}

/** @throws {RangeError} unless `version` fits `models.Ring.version`. */
export function checkVersion(version: number): number {
  if (!Number.isInteger(version) || version < 0 || version > RING_VERSION_MAX) {
    throw new RangeError(
      `Cannot use ring version ${version}: expected an integer from 0 to ${RING_VERSION_MAX}`,
    );
  }
  return version;
}

/** The version of the ring that replaces one at `version`. @throws {RangeError} past the maximum. */
export function nextVersion(version: number): number {
  if (version >= RING_VERSION_MAX) {
    throw new RangeError(`Cannot change ring version ${version}: it is the last version`);
  }
  return version + 1;
}

/** The `Peers:` block of a ring's description, one member a line. */
export function describePeers(peers: readonly RingPeer[]): string {
  if (peers.length === 0) return "Peers: (none)";
  return ["Peers:", ...peers.map((peer) => `\t${peer.uuid} (${peer.totalBlocks} blocks)`)].join(
    "\n",
  );
}
