/**
 * The union ring: two rings at once, for a transition from an old ring to a
 * new one. A block's permutation is the old ring's followed by the new
 * ring's members not already in it, so readers find data where it was while
 * the rebalancer copies it to where it goes. It takes the new ring's version
 * and replication, and is stored with both rings marshalled in
 * `attrs["old"]` and `attrs["new"]`. Like the original's, nothing creates one
 * yet; it decodes and places.
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";
import { NoPeersError } from "../errors.ts";
import { encodeRing } from "./_ring_record.ts";
import { unionPeers, unionUuids } from "./peer_list.ts";
import { type PeerPermutation, type Ring, type RingPeer, RingType } from "./ring.ts";

/** `attrs` key of the old ring in a stored union ring. */
export const UNION_OLD_ATTR = "old";
/** `attrs` key of the new ring in a stored union ring. */
export const UNION_NEW_ATTR = "new";

/**
 * The union of an old and a new ring.
 *
 * @example Usage
 * ```ts
 * import { BlockRef, BlockType } from "../core/block_ref.ts";
 * import { ModRing } from "./mod_ring.ts";
 * import { UnionRing } from "./union_ring.ts";
 * const before = new ModRing({ version: 1, replication: 1, peers: [{ uuid: "a", totalBlocks: 1 }] });
 * const after = before.addPeers([{ uuid: "b", totalBlocks: 1 }]);
 * const union = new UnionRing(before, after);
 * const placed = union.getPeers(new BlockRef(1, BlockType.data, 2, 3));
 * if (placed.peers[0] !== "a" || union.version !== 2) throw new Error("wrong");
 * ```
 */
export class UnionRing implements Ring {
  readonly type = RingType.union;
  /** The ring data is moving from: first in every permutation. */
  readonly oldRing: Ring;
  /** The ring data is moving to: gives the version and the replication. */
  readonly newRing: Ring;

  constructor(oldRing: Ring, newRing: Ring) {
    this.oldRing = oldRing;
    this.newRing = newRing;
  }

  /** The new ring's version. */
  get version(): number {
    return this.newRing.version;
  }

  /** The new ring's configured replication. */
  get replication(): number {
    return this.newRing.replication;
  }

  /** Members of the old ring, then those only in the new one. */
  members(): RingPeer[] {
    return unionPeers(this.oldRing.members(), this.newRing.members());
  }

  /**
   * The old permutation, then the new ring's other members; the owners are
   * the first (new ring's replication) of them. When one of the rings is
   * empty, the other's permutation.
   *
   * @throws {NoPeersError} when both rings are empty.
   */
  getPeers(ref: BlockRef): PeerPermutation {
    const before = this.oldRing.members().length > 0 ? this.oldRing.getPeers(ref) : null;
    const after = this.newRing.members().length > 0 ? this.newRing.getPeers(ref) : null;
    if (before === null && after === null) {
      throw new NoPeersError(
        `Cannot place block ${ref}: both rings of the union (version ${this.version}) are empty`,
      );
    }
    if (before === null) return after!;
    if (after === null) return before;
    const peers = unionUuids(before.peers, after.peers);
    return { replication: Math.min(after.replication, peers.length), peers };
  }

  /** `Ring: Union` and both rings. */
  describe(): string {
    const indent = (text: string) => text.split("\n").map((line) => `\t${line}`).join("\n");
    return `Ring: Union\nVersion: ${this.version}\nOld:\n${
      indent(this.oldRing.describe())
    }\nNew:\n${indent(this.newRing.describe())}`;
  }

  /** The ring as `models.Ring` bytes, both rings nested in `attrs`. */
  marshal(): Uint8Array {
    return encodeRing({
      type: this.type,
      version: this.version,
      replication: this.replication,
      peers: [],
      attrs: {
        [UNION_OLD_ATTR]: this.oldRing.marshal(),
        [UNION_NEW_ATTR]: this.newRing.marshal(),
      },
    });
  }
}
