/**
 * The Ring contract: where the replicas of a block live. A ring is an
 * immutable value with a version; every change (peers added or removed,
 * replication changed) produces a new ring at version + 1, stored in the
 * metadata service with a compare-and-swap and watched by every process.
 *
 * Placement is pure and synchronous: the same ring and ref give the same
 * permutation on every machine.
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";

/** Ring kinds, with the original's numbering (stored in `models.Ring.type`). */
export const RingType = { empty: 0, single: 1, mod: 2, union: 3, ketama: 4 } as const;
/** A ring kind. */
export type RingType = typeof RingType[keyof typeof RingType];

/** A ring member: its uuid and capacity (weights placement in `ketama`). */
export interface RingPeer {
  uuid: string;
  /** Capacity, in blocks. */
  totalBlocks: number;
}

/**
 * Where a block lives: every member in preference order. The first
 * `replication` are the owners; the rest are fallbacks, tried in order by
 * reads and by writes whose owners fail.
 */
export interface PeerPermutation {
  /** How many of `peers` own the block: min(ring replication, members). */
  replication: number;
  /** Member uuids, each once. */
  peers: string[];
}

/** A placement ring. */
export interface Ring {
  readonly type: RingType;
  readonly version: number;
  /** The configured replication factor (before clamping to the member count). */
  readonly replication: number;
  /** The members, in the ring's stored order. */
  members(): RingPeer[];
  /**
   * The permutation of members for `ref`.
   * @throws {NoPeersError} when the ring has no members.
   */
  getPeers(ref: BlockRef): PeerPermutation;
  /** A human-readable description (`torusctl ring get`). */
  describe(): string;
  /** The ring as `models.Ring` bytes. */
  marshal(): Uint8Array;
}

/** A ring whose membership and replication can change (each returns version + 1). */
export interface MutableRing extends Ring {
  /** @throws {AlreadyExistsError} when every peer is already a member. */
  addPeers(peers: RingPeer[]): MutableRing;
  /** @throws {PeerNotFoundError} when none of them is a member. */
  removePeers(uuids: string[]): MutableRing;
  changeReplication(replication: number): MutableRing;
}
