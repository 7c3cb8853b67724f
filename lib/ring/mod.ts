/**
 * Rings: where the replicas of a block live.
 *
 * A ring is an immutable, versioned value that maps a {@linkcode BlockRef} to
 * a permutation of its members: the first `replication` own the block, the
 * rest are fallbacks in order. Placement is pure and synchronous, so every
 * process holding the same ring agrees on every block without talking.
 * Changes (peers added or removed, replication changed) make a new ring at
 * version + 1, which the metadata service stores with a compare-and-swap and
 * every node watches; the rebalancer then moves data to match.
 *
 * Kinds, numbered as in the original Torus: `empty` (a fresh data directory,
 * places nothing), `single` (one member), `mod` (crc32 modulo the sorted
 * members: even, but a membership change moves most blocks), `union` (old and
 * new ring during a transition) and `ketama` (the default: consistent hashing
 * weighted by capacity, placement-compatible with the original, moving about
 * 1/(N+1) of the blocks when one member joins). The stored form is
 * `models.Ring`; {@linkcode unmarshalRing} decodes any kind.
 * {@linkcode simulateRingChange} measures what a membership change moves
 * (`ringtool`).
 *
 * @example Usage
 * ```ts
 * import { BlockRef, BlockType } from "../core/block_ref.ts";
 * import { createRing, RingType, unmarshalRing } from "./mod.ts";
 * const ring = createRing(RingType.ketama, {
 *   version: 1,
 *   replication: 2,
 *   peers: [{ uuid: "a", totalBlocks: 1 << 20 }, { uuid: "b", totalBlocks: 1 << 20 }],
 * });
 * const stored = ring.marshal();
 * const owners = unmarshalRing(stored).getPeers(new BlockRef(1, BlockType.data, 7, 1));
 * if (owners.replication !== 2 || owners.peers.length !== 2) throw new Error("wrong");
 * ```
 *
 * @module
 */
export {
  type MutableRing,
  type PeerPermutation,
  type Ring,
  type RingPeer,
  RingType,
} from "./ring.ts";
export { EmptyRing, type EmptyRingOptions } from "./empty_ring.ts";
export { SingleRing } from "./single_ring.ts";
export { ModRing } from "./mod_ring.ts";
export { KetamaRing } from "./ketama_ring.ts";
export { UNION_NEW_ATTR, UNION_OLD_ATTR, UnionRing } from "./union_ring.ts";
export {
  createRing,
  isMutableRing,
  parseRingType,
  RING_NESTING_DEPTH_MAX,
  ringTypeName,
  unmarshalRing,
} from "./ring_codec.ts";
export { RING_VERSION_MAX, type RingOptions, unionPeers, unionUuids } from "./peer_list.ts";
export {
  describeRingSim,
  RING_SIM_BLOCKS_MAX,
  RING_SIM_NODES_MAX,
  RING_SIM_PEER_TOTAL_BLOCKS,
  type RingBalance,
  type RingSimOptions,
  type RingSimResult,
  simulateRingChange,
} from "./ring_sim.ts";
