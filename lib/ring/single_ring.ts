/**
 * The single ring: exactly one member, which owns every block. For a
 * one-node setup and tests; a cluster that grows uses `ketama`.
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";
import { encodeRing } from "./_ring_record.ts";
import { checkPeers, checkReplication, checkVersion, type RingOptions } from "./peer_list.ts";
import { type PeerPermutation, type Ring, type RingPeer, RingType } from "./ring.ts";

/**
 * A ring of one member.
 *
 * @example Usage
 * ```ts
 * import { BlockRef, BlockType } from "../core/block_ref.ts";
 * import { SingleRing } from "./single_ring.ts";
 * const ring = new SingleRing({
 *   version: 1,
 *   replication: 2,
 *   peers: [{ uuid: "node-a", totalBlocks: 1024 }],
 * });
 * const placed = ring.getPeers(new BlockRef(1, BlockType.data, 2, 3));
 * if (placed.peers[0] !== "node-a" || placed.replication !== 1) throw new Error("wrong");
 * ```
 */
export class SingleRing implements Ring {
  readonly type = RingType.single;
  readonly version: number;
  readonly replication: number;
  readonly #peer: RingPeer;

  /** @throws {RangeError} unless there is exactly one valid peer, or on a bad version or replication. */
  constructor(options: RingOptions) {
    this.version = checkVersion(options.version);
    this.replication = checkReplication(options.replication);
    const peers = checkPeers(options.peers);
    if (peers.length !== 1) {
      throw new RangeError(
        `Cannot create a single ring with ${peers.length} peers: it has exactly one`,
      );
    }
    this.#peer = peers[0]!;
  }

  /** The one member. */
  members(): RingPeer[] {
    return [this.#peer];
  }

  /** The one member, owner of every block. */
  getPeers(_ref: BlockRef): PeerPermutation {
    return { replication: 1, peers: [this.#peer.uuid] };
  }

  /** `Ring: Single`, the version and the member. */
  describe(): string {
    return `Ring: Single\nVersion: ${this.version}\nUUID: ${this.#peer.uuid}`;
  }

  /** The ring as `models.Ring` bytes. */
  marshal(): Uint8Array {
    return encodeRing({
      type: this.type,
      version: this.version,
      replication: this.replication,
      peers: [this.#peer],
    });
  }
}
