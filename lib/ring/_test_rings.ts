/**
 * Test helpers of the ring folder: deterministic peers and refs, and the
 * permutation invariants every ring must keep.
 *
 * @module
 */
import assert from "node:assert/strict";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { Prng } from "../prng.ts";
import { effectiveReplication } from "./peer_list.ts";
import type { Ring, RingPeer } from "./ring.ts";
import { syntheticPeers } from "./ring_sim.ts";

/** Capacity of test peers, in blocks. */
export const TEST_PEER_TOTAL_BLOCKS = 1 << 20;

/** `count` peers with uuids drawn from `seed`. */
export function testPeers(
  count: number,
  seed = 1,
  totalBlocks = TEST_PEER_TOTAL_BLOCKS,
): RingPeer[] {
  return syntheticPeers(new Prng(seed), count, totalBlocks);
}

/** `count` distinct refs shaped like real data: files of 1000 blocks in volume 1. */
export function testRefs(count: number, inodeStart = 1): BlockRef[] {
  return Array.from(
    { length: count },
    (_, i) => new BlockRef(1, BlockType.data, inodeStart + Math.floor(i / 1000), 1 + (i % 1000)),
  );
}

/** The owners of each ref. */
export function ownersOf(ring: Ring, refs: BlockRef[]): string[][] {
  return refs.map((ref) => {
    const permutation = ring.getPeers(ref);
    return permutation.peers.slice(0, permutation.replication);
  });
}

/** How many of `refs` each member owns first (index 0 of the permutation). */
export function primaryCounts(ring: Ring, refs: BlockRef[]): Map<string, number> {
  const counts = new Map(ring.members().map((peer) => [peer.uuid, 0]));
  for (const ref of refs) {
    const first = ring.getPeers(ref).peers[0]!;
    counts.set(first, counts.get(first)! + 1);
  }
  return counts;
}

/**
 * Asserts the contract of `getPeers` for each ref: every member exactly once,
 * owners = the configured replication clamped to the member count.
 */
export function assertPermutations(ring: Ring, refs: BlockRef[]): void {
  const members = ring.members().map((peer) => peer.uuid).sort();
  const replication = effectiveReplication(ring.replication, members.length);
  for (const ref of refs) {
    const permutation = ring.getPeers(ref);
    assert.deepEqual([...permutation.peers].sort(), members, `members of ${ref}`);
    assert.equal(permutation.replication, replication, `replication of ${ref}`);
  }
}
