/**
 * A tiny {@linkcode Ring} for the distributor's tests: each ref gets a
 * pseudo-random permutation of the members, seeded by the ref's CRC-32, so
 * owners spread over the members and every machine agrees.
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";
import { crc32 } from "../core/crc32.ts";
import { NoPeersError } from "../errors.ts";
import { Prng } from "../prng.ts";
import { type PeerPermutation, type Ring, type RingPeer, RingType } from "../ring/ring.ts";

/** Capacity each test member claims, in blocks. */
const TEST_PEER_BLOCKS = 1000;

/** A test ring over `uuids` at `version` with `replication`. */
export class TestRing implements Ring {
  /** Reported as `mod`: the test ring has no type of its own. */
  readonly type = RingType.mod;
  /** The ring's version. */
  readonly version: number;
  /** The configured replication factor. */
  readonly replication: number;
  readonly #uuids: string[];

  constructor(version: number, replication: number, uuids: string[]) {
    this.version = version;
    this.replication = replication;
    this.#uuids = [...uuids].sort();
  }

  /** The members, sorted by uuid. */
  members(): RingPeer[] {
    return this.#uuids.map((uuid) => ({ uuid, totalBlocks: TEST_PEER_BLOCKS }));
  }

  /** A permutation of the members seeded by the ref's CRC-32. */
  getPeers(ref: BlockRef): PeerPermutation {
    if (this.#uuids.length === 0) {
      throw new NoPeersError(`Cannot place ${ref}: the ring has no members`);
    }
    const peers = [...this.#uuids];
    const prng = new Prng(crc32(ref.toBytes()));
    for (let i = peers.length - 1; i > 0; i--) {
      const j = prng.nextInt(i + 1);
      [peers[i], peers[j]] = [peers[j]!, peers[i]!];
    }
    return { replication: Math.min(this.replication, peers.length), peers };
  }

  /** The ring at version + 1 with `uuids` as members. */
  withMembers(uuids: string[]): TestRing {
    return new TestRing(this.version + 1, this.replication, uuids);
  }

  /** A description like the original's. */
  describe(): string {
    return `Ring: Test\nReplication:${this.replication}\nPeers:\n\t${this.#uuids.join("\n\t")}`;
  }

  /** Empty: a test ring is never stored. */
  marshal(): Uint8Array {
    return new Uint8Array();
  }
}
