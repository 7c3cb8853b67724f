/**
 * The empty ring: no members, so no block can be placed. A fresh data
 * directory starts with it (type 0, version 1, replication 1), and a cluster
 * replaces it with a `ketama` ring when peers join.
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";
import { NoPeersError } from "../errors.ts";
import { encodeRing } from "./_ring_record.ts";
import { checkVersion } from "./peer_list.ts";
import { REPLICAS_MAX } from "../constants.ts";
import { type PeerPermutation, type Ring, type RingPeer, RingType } from "./ring.ts";

/** Options of {@linkcode EmptyRing}. */
export interface EmptyRingOptions {
  version: number;
  /** Stored as given (0 allowed) so the ring round-trips; it places nothing. */
  replication: number;
}

/**
 * A ring without members.
 *
 * @example Usage
 * ```ts
 * import { EmptyRing } from "./empty_ring.ts";
 * const ring = new EmptyRing({ version: 1, replication: 1 });
 * if (ring.members().length !== 0) throw new Error("not empty");
 * ```
 */
export class EmptyRing implements Ring {
  readonly type = RingType.empty;
  readonly version: number;
  readonly replication: number;

  /** @throws {RangeError} on a bad version or replication. */
  constructor(options: EmptyRingOptions) {
    this.version = checkVersion(options.version);
    if (
      !Number.isInteger(options.replication) || options.replication < 0 ||
      options.replication > REPLICAS_MAX
    ) {
      throw new RangeError(
        `Cannot use replication ${options.replication}: expected an integer from 0 to ${REPLICAS_MAX}`,
      );
    }
    this.replication = options.replication;
  }

  /** No members. */
  members(): RingPeer[] {
    return [];
  }

  /** @throws {NoPeersError} always: an empty ring places nothing. */
  getPeers(ref: BlockRef): PeerPermutation {
    throw new NoPeersError(
      `Cannot place block ${ref}: the ring (version ${this.version}) is empty; add peers to the ring`,
    );
  }

  /** `Ring: Empty` and the version. */
  describe(): string {
    return `Ring: Empty\nVersion: ${this.version}`;
  }

  /** The ring as `models.Ring` bytes. */
  marshal(): Uint8Array {
    return encodeRing({
      type: this.type,
      version: this.version,
      replication: this.replication,
      peers: [],
    });
  }
}
