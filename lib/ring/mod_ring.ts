/**
 * The mod ring: members sorted by uuid, and a block's permutation is that
 * list rotated by `crc32(ref) mod members`. Even, cheap and deterministic,
 * but adding or removing one member re-places most blocks (ringtool shows
 * it): kept for comparison and for the original's stored rings.
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";
import { refBytes } from "./_ref_bytes.ts";
import { crc32 } from "../core/crc32.ts";
import { NoPeersError } from "../errors.ts";
import { encodeRing } from "./_ring_record.ts";
import {
  checkPeers,
  checkReplication,
  checkVersion,
  describePeers,
  effectiveReplication,
  nextVersion,
  type RingOptions,
  withPeersAdded,
  withPeersRemoved,
} from "./peer_list.ts";
import { type MutableRing, type PeerPermutation, type RingPeer, RingType } from "./ring.ts";

/**
 * A ring placing by `crc32(ref) mod members`.
 *
 * @example Usage
 * ```ts
 * import { BlockRef, BlockType } from "../core/block_ref.ts";
 * import { ModRing } from "./mod_ring.ts";
 * const ring = new ModRing({
 *   version: 1,
 *   replication: 2,
 *   peers: [{ uuid: "b", totalBlocks: 1 }, { uuid: "a", totalBlocks: 1 }, { uuid: "c", totalBlocks: 1 }],
 * });
 * const placed = ring.getPeers(new BlockRef(1, BlockType.data, 2, 3));
 * if (placed.peers.length !== 3 || placed.replication !== 2) throw new Error("wrong");
 * ```
 */
export class ModRing implements MutableRing {
  readonly type = RingType.mod;
  readonly version: number;
  readonly replication: number;
  readonly #peers: readonly RingPeer[];
  /** Member uuids in ascending order, the list every permutation rotates. */
  readonly #sorted: readonly string[];

  /** @throws {RangeError} on a bad version, replication or member. */
  constructor(options: RingOptions) {
    this.version = checkVersion(options.version);
    this.replication = checkReplication(options.replication);
    this.#peers = checkPeers(options.peers);
    this.#sorted = this.#peers.map((peer) => peer.uuid).sort();
  }

  /** The members, in stored order. */
  members(): RingPeer[] {
    return [...this.#peers];
  }

  /**
   * The sorted members rotated left by `crc32(ref) mod members`.
   *
   * @throws {NoPeersError} when the ring has no members.
   */
  getPeers(ref: BlockRef): PeerPermutation {
    const count = this.#sorted.length;
    if (count === 0) {
      throw new NoPeersError(
        `Cannot place block ${ref}: the mod ring (version ${this.version}) has no members`,
      );
    }
    const start = crc32(refBytes(ref)) % count;
    const peers = new Array<string>(count);
    for (let i = 0; i < count; i++) peers[i] = this.#sorted[(start + i) % count]!;
    return { replication: effectiveReplication(this.replication, count), peers };
  }

  /** `Ring: Mod`, version, replication and members. */
  describe(): string {
    return `Ring: Mod\nVersion: ${this.version}\nReplication: ${this.replication}\n${
      describePeers(this.#peers)
    }`;
  }

  /** The ring as `models.Ring` bytes. */
  marshal(): Uint8Array {
    return encodeRing({
      type: this.type,
      version: this.version,
      replication: this.replication,
      peers: this.#peers,
    });
  }

  /** @throws {AlreadyExistsError} when every peer is already a member. */
  addPeers(peers: RingPeer[]): ModRing {
    return new ModRing({
      version: nextVersion(this.version),
      replication: this.replication,
      peers: withPeersAdded(this.#peers, checkPeers(peers)),
    });
  }

  /** @throws {PeerNotFoundError} when none of them is a member. */
  removePeers(uuids: string[]): ModRing {
    return new ModRing({
      version: nextVersion(this.version),
      replication: this.replication,
      peers: withPeersRemoved(this.#peers, uuids),
    });
  }

  /** @throws {RangeError} on a bad replication factor. */
  changeReplication(replication: number): ModRing {
    return new ModRing({
      version: nextVersion(this.version),
      replication,
      peers: this.#peers,
    });
  }
}
