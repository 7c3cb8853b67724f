/**
 * The ketama ring, the default: consistent hashing weighted by capacity.
 * Each member gets points on a hash continuum in proportion to its
 * capacity (`totalBlocks` divided by the capacities' gcd), and a block's
 * permutation is the walk clockwise from its hash (see `_continuum.ts` for
 * the exact rules, those of the original Torus). Adding a member takes about
 * 1/(N+1) of the blocks, from every other member; removing one moves only the
 * blocks it held.
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";
import { refBytes } from "./_ref_bytes.ts";
import { NoPeersError } from "../errors.ts";
import { Continuum } from "./_continuum.ts";
import { encodeRing } from "./_ring_record.ts";
import {
  capacityWeights,
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
 * A consistent-hashing ring weighted by member capacity.
 *
 * @example Usage
 * ```ts
 * import { BlockRef, BlockType } from "../core/block_ref.ts";
 * import { KetamaRing } from "./ketama_ring.ts";
 * const ring = new KetamaRing({
 *   version: 1,
 *   replication: 2,
 *   peers: [{ uuid: "a", totalBlocks: 1000 }, { uuid: "b", totalBlocks: 1000 }],
 * });
 * const grown = ring.addPeers([{ uuid: "c", totalBlocks: 2000 }]);
 * const placed = grown.getPeers(new BlockRef(1, BlockType.data, 2, 3));
 * if (grown.version !== 2 || placed.peers.length !== 3) throw new Error("wrong");
 * ```
 */
export class KetamaRing implements MutableRing {
  readonly type = RingType.ketama;
  readonly version: number;
  readonly replication: number;
  readonly #peers: readonly RingPeer[];
  /** Built on first placement, and shared by a ring that only changes replication. */
  #continuum: Continuum | null = null;

  /** @throws {RangeError} on a bad version, replication or member. */
  constructor(options: RingOptions) {
    this.version = checkVersion(options.version);
    this.replication = checkReplication(options.replication);
    this.#peers = checkPeers(options.peers);
  }

  /** The members, in stored order. */
  members(): RingPeer[] {
    return [...this.#peers];
  }

  /**
   * The members walking clockwise from the block's hash; members without
   * points on the continuum (capacity 0) follow in stored order.
   *
   * @throws {NoPeersError} when the ring has no members.
   */
  getPeers(ref: BlockRef): PeerPermutation {
    const count = this.#peers.length;
    if (count === 0) {
      throw new NoPeersError(
        `Cannot place block ${ref}: the ketama ring (version ${this.version}) has no members`,
      );
    }
    const indices = this.#getContinuum().nodesFor(refBytes(ref), count);
    if (indices.length < count) {
      const found = new Set(indices);
      for (let i = 0; i < count; i++) if (!found.has(i)) indices.push(i);
    }
    const peers = new Array<string>(count);
    for (let i = 0; i < count; i++) peers[i] = this.#peers[indices[i]!]!.uuid;
    return { replication: effectiveReplication(this.replication, count), peers };
  }

  /** `Ring: Ketama`, version, replication and members. */
  describe(): string {
    return `Ring: Ketama\nVersion: ${this.version}\nReplication: ${this.replication}\n${
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
  addPeers(peers: RingPeer[]): KetamaRing {
    return new KetamaRing({
      version: nextVersion(this.version),
      replication: this.replication,
      peers: withPeersAdded(this.#peers, checkPeers(peers)),
    });
  }

  /** @throws {PeerNotFoundError} when none of them is a member. */
  removePeers(uuids: string[]): KetamaRing {
    return new KetamaRing({
      version: nextVersion(this.version),
      replication: this.replication,
      peers: withPeersRemoved(this.#peers, uuids),
    });
  }

  /** Same members and continuum, another replication factor. @throws {RangeError} */
  changeReplication(replication: number): KetamaRing {
    const next = new KetamaRing({
      version: nextVersion(this.version),
      replication,
      peers: this.#peers,
    });
    next.#continuum = this.#continuum;
    return next;
  }

  #getContinuum(): Continuum {
    if (this.#continuum === null) {
      const weights = capacityWeights(this.#peers);
      this.#continuum = new Continuum(
        this.#peers.map((peer, i) => ({ name: peer.uuid, weight: weights[i]! })),
      );
    }
    return this.#continuum;
  }
}
