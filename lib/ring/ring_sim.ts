/**
 * The ring rebalance simulation behind `ringtool`: place a synthetic data
 * set with one ring, change the ring (add or remove nodes, change
 * replication), place it again, and measure what moved.
 *
 * The data set is what the original's ringtool generated, from a seeded
 * {@linkcode Prng}: files of 1 to 1000 blocks in volume 1, one INode each,
 * written linearly (blocks `(1, inode, 1..n)`), or, for a share of them,
 * "rewritten": after the linear write, up to 30 overwrites of a random
 * stretch, each a new INode, as a volume that takes small random writes
 * looks. Only the live block of each position counts.
 *
 * Blocks move between placements by the rebalancer's rule: a replica stays
 * where the old and the new ring both put it (kept), and every new owner that
 * did not hold the block receives a copy (sent). The ideal is the share a
 * perfectly balanced ring must move: `|delta| / max(nodes, nodes + delta)`
 * of the data.
 *
 * Pure and synchronous: the same options give the same result.
 *
 * @module
 */
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { REPLICAS_MAX } from "../constants.ts";
import { Prng } from "../prng.ts";
import { createRing, isMutableRing, ringTypeName } from "./ring_codec.ts";
import type { Ring, RingPeer, RingType } from "./ring.ts";

/** Capacity of every simulated node, in blocks (the original's 100 Gi blocks). */
export const RING_SIM_PEER_TOTAL_BLOCKS = 100 * 2 ** 30;
/** Largest simulated file, in blocks (the original's 1000). */
export const RING_SIM_FILE_BLOCKS_MAX = 1000;
/** Most overwrites of a rewritten file (the original's 30, exclusive). */
export const RING_SIM_REWRITES_MAX = 30;
/** Most nodes in a simulation, before or after the change. */
export const RING_SIM_NODES_MAX = 1000;
/**
 * Most blocks in a simulation: 2^24 (4 TiB of 256 KiB blocks) takes about
 * 40 s with a 5-node ketama ring; memory does not grow with it (blocks are
 * placed as they are generated).
 */
export const RING_SIM_BLOCKS_MAX = 2 ** 24;
/** The volume every simulated block belongs to. */
export const RING_SIM_VOLUME_ID = 1;

/** What to simulate. */
export interface RingSimOptions {
  ringType: RingType;
  /** Replication before the change (0 means 1). */
  replication: number;
  /** Replication after the change; 0 keeps `replication`. */
  replicationEnd: number;
  /** Nodes before the change, at least 1. */
  nodes: number;
  /** Nodes added (> 0) or removed (< 0). */
  delta: number;
  blockSizeBytes: number;
  /** Data simulated, in bytes: `totalDataBytes / blockSizeBytes` blocks. */
  totalDataBytes: number;
  /**
   * Share of files that are rewritten rather than linear, in percent (0 to
   * 100). The original compared a normal deviate with this value / 100, so
   * its default of 40 rewrote about 66% of the files; here it is the share.
   */
  rewriteEdgePercent: number;
  /** Seed of the data set and the node uuids. */
  seed: number;
}

/** Blocks per node under one ring, with their spread. */
export interface RingBalance {
  /** Blocks (replicas) each node holds, by uuid, in the ring's member order. */
  blocksByNode: Map<string, number>;
  totalBlocks: number;
  meanBlocks: number;
  /** Population standard deviation of the per-node counts. */
  stddevBlocks: number;
}

/** What a ring change moved. */
export interface RingSimResult {
  /** The rings before and after. */
  fromRing: Ring;
  toRing: Ring;
  /** Distinct live blocks placed. */
  uniqueBlocks: number;
  files: number;
  rewrittenFiles: number;
  before: RingBalance;
  after: RingBalance;
  /** Replicas the new placement keeps where they were. */
  blocksKept: number;
  /** Replicas copied to a node that did not hold them. */
  blocksSent: number;
  /** `blocksSent` as a percentage of all replicas after the change. */
  percentSent: number;
  trafficBytes: number;
  /** What a perfectly balanced ring would send for the same change. */
  idealTrafficBytes: number;
}

/**
 * A uuid (random version 4 form) drawn from `prng`.
 *
 * @example Usage
 * ```ts
 * import { Prng } from "../prng.ts";
 * import { syntheticUuid } from "./ring_sim.ts";
 * const uuid = syntheticUuid(new Prng(1));
 * if (!/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(uuid)) {
 *   throw new Error(uuid);
 * }
 * ```
 */
export function syntheticUuid(prng: Prng): string {
  const bytes = prng.fill(new Uint8Array(16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

/** `count` peers with uuids from `prng`, each of capacity `totalBlocks`. */
export function syntheticPeers(prng: Prng, count: number, totalBlocks: number): RingPeer[] {
  return Array.from({ length: count }, () => ({ uuid: syntheticUuid(prng), totalBlocks }));
}

/**
 * The live blocks of one synthetic file of `blocks` blocks whose first INode
 * is `inode`: linear, or rewritten by up to {@linkcode RING_SIM_REWRITES_MAX}
 * overwrites, each under the next INode. Returns the refs by position and
 * the next free INode.
 */
export function syntheticFile(
  prng: Prng,
  options: { inode: number; blocks: number; rewritten: boolean },
): { refs: BlockRef[]; nextInode: number } {
  const refs = linear(options.inode, options.blocks);
  let inode = options.inode + 1;
  if (options.rewritten) {
    const overwrites = prng.nextInt(RING_SIM_REWRITES_MAX);
    for (let i = 0; i < overwrites; i++) {
      const offset = prng.nextInt(refs.length);
      const length = prng.nextInt(refs.length - offset);
      refs.splice(offset, length, ...linear(inode, length));
      inode++;
    }
  }
  return { refs, nextInode: inode };
}

function linear(inode: number, blocks: number): BlockRef[] {
  return Array.from(
    { length: blocks },
    (_, i) => new BlockRef(RING_SIM_VOLUME_ID, BlockType.data, inode, i + 1),
  );
}

/**
 * Runs a simulation.
 *
 * @throws {RangeError} on options out of range (each named with its limit),
 *   or a ring type that cannot hold the nodes asked for.
 * @throws {NoPeersError} when a ring cannot place blocks (the empty ring).
 * @example Usage
 * ```ts
 * import { RingType } from "./ring.ts";
 * import { simulateRingChange } from "./ring_sim.ts";
 * const result = simulateRingChange({
 *   ringType: RingType.ketama,
 *   replication: 2,
 *   replicationEnd: 0,
 *   nodes: 4,
 *   delta: 1,
 *   blockSizeBytes: 256 * 1024,
 *   totalDataBytes: 1024 ** 3,
 *   rewriteEdgePercent: 40,
 *   seed: 1,
 * });
 * if (result.uniqueBlocks !== 4096 || result.after.blocksByNode.size !== 5) throw new Error("wrong");
 * ```
 */
export function simulateRingChange(options: RingSimOptions): RingSimResult {
  const blockCount = checkOptions(options);
  const prng = new Prng(options.seed);
  const peers = syntheticPeers(
    prng,
    options.nodes + Math.max(options.delta, 0),
    RING_SIM_PEER_TOTAL_BLOCKS,
  );
  const { fromRing, toRing } = changedRings(options, peers);
  const before = new Counter(fromRing);
  const after = new Counter(toRing);
  let blocksKept = 0;
  let blocksSent = 0;
  let files = 0;
  let rewrittenFiles = 0;
  let placed = 0;
  let inode = 1;
  while (placed < blockCount) {
    const rewritten = prng.nextFloat() * 100 < options.rewriteEdgePercent;
    const blocks = Math.min(1 + prng.nextInt(RING_SIM_FILE_BLOCKS_MAX), blockCount - placed);
    const file = syntheticFile(prng, { inode, blocks, rewritten });
    inode = file.nextInode;
    files++;
    if (rewritten) rewrittenFiles++;
    for (const ref of file.refs) {
      const oldOwners = before.place(ref);
      const newOwners = after.place(ref);
      for (const uuid of newOwners) {
        if (oldOwners.includes(uuid)) blocksKept++;
        else blocksSent++;
      }
    }
    placed += blocks;
  }
  const replicas = blocksKept + blocksSent;
  const totalBytes = replicas * options.blockSizeBytes;
  const idealShare = Math.abs(options.delta) /
    Math.max(options.nodes, options.nodes + options.delta);
  return {
    fromRing,
    toRing,
    uniqueBlocks: placed,
    files,
    rewrittenFiles,
    before: before.balance(),
    after: after.balance(),
    blocksKept,
    blocksSent,
    percentSent: replicas === 0 ? 0 : (blocksSent * 100) / replicas,
    trafficBytes: blocksSent * options.blockSizeBytes,
    idealTrafficBytes: Math.round(totalBytes * idealShare),
  };
}

/** Validates `options` and returns the number of blocks to place. */
function checkOptions(options: RingSimOptions): number {
  const integer = (name: string, value: number, min: number, max: number) => {
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new RangeError(
        `Cannot simulate ${name} ${value}: expected an integer from ${min} to ${max}`,
      );
    }
  };
  integer("--nodes", options.nodes, 1, RING_SIM_NODES_MAX);
  integer("--delta", options.delta, 1 - options.nodes, RING_SIM_NODES_MAX - options.nodes);
  integer("--rep", options.replication, 0, REPLICAS_MAX);
  integer("--rep-end", options.replicationEnd, 0, REPLICAS_MAX);
  integer("--block-size", options.blockSizeBytes, 1, Number.MAX_SAFE_INTEGER);
  integer("--total-data", options.totalDataBytes, options.blockSizeBytes, Number.MAX_SAFE_INTEGER);
  integer("--seed", options.seed, 0, 0xffff_ffff);
  if (!(options.rewriteEdgePercent >= 0 && options.rewriteEdgePercent <= 100)) {
    throw new RangeError(
      `Cannot simulate --rewrite-edge ${options.rewriteEdgePercent}: expected a percentage from 0 to 100`,
    );
  }
  const blockCount = Math.floor(options.totalDataBytes / options.blockSizeBytes);
  if (blockCount > RING_SIM_BLOCKS_MAX) {
    throw new RangeError(
      `Cannot simulate ${blockCount} blocks: at most ${RING_SIM_BLOCKS_MAX}; use less --total-data or a larger --block-size`,
    );
  }
  return blockCount;
}

/**
 * The ring before (version 1, the first `nodes` peers) and after: the same
 * ring with peers added or removed and replication changed when the type
 * supports it, else a fresh ring of the same type at version 2.
 */
function changedRings(
  options: RingSimOptions,
  peers: RingPeer[],
): { fromRing: Ring; toRing: Ring } {
  const replicationEnd = options.replicationEnd === 0
    ? options.replication
    : options.replicationEnd;
  const fromRing = createRing(options.ringType, {
    version: 1,
    replication: options.replication,
    peers: peers.slice(0, options.nodes),
  });
  if (!isMutableRing(fromRing)) {
    const unchanged = options.delta === 0 && replicationEnd === options.replication;
    const toRing = unchanged ? fromRing : createRing(options.ringType, {
      version: 2,
      replication: replicationEnd,
      peers: peers.slice(0, options.nodes + options.delta),
    });
    return { fromRing, toRing };
  }
  let toRing = fromRing;
  if (options.delta > 0) toRing = toRing.addPeers(peers.slice(options.nodes));
  if (options.delta < 0) {
    const removed = peers.slice(options.nodes + options.delta, options.nodes);
    toRing = toRing.removePeers(removed.map((peer) => peer.uuid));
  }
  if (replicationEnd !== options.replication) toRing = toRing.changeReplication(replicationEnd);
  return { fromRing, toRing };
}

/** Counts the replicas each member of a ring holds. */
class Counter {
  readonly #ring: Ring;
  readonly #counts = new Map<string, number>();

  constructor(ring: Ring) {
    this.#ring = ring;
    for (const peer of ring.members()) this.#counts.set(peer.uuid, 0);
  }

  /** Places `ref`, counts it on its owners and returns them. */
  place(ref: BlockRef): string[] {
    const permutation = this.#ring.getPeers(ref);
    const owners = permutation.peers.slice(0, permutation.replication);
    for (const uuid of owners) this.#counts.set(uuid, this.#counts.get(uuid)! + 1);
    return owners;
  }

  balance(): RingBalance {
    const counts = [...this.#counts.values()];
    const totalBlocks = counts.reduce((sum, count) => sum + count, 0);
    const meanBlocks = counts.length === 0 ? 0 : totalBlocks / counts.length;
    const variance = counts.length === 0
      ? 0
      : counts.reduce((sum, count) => sum + (count - meanBlocks) ** 2, 0) / counts.length;
    return {
      blocksByNode: new Map(this.#counts),
      totalBlocks,
      meanBlocks,
      stddevBlocks: Math.sqrt(variance),
    };
  }
}

/** A one-line summary of what was simulated, for headings. */
export function describeRingSim(options: RingSimOptions): string {
  const replicationEnd = options.replicationEnd === 0
    ? options.replication
    : options.replicationEnd;
  return `${ringTypeName(options.ringType)} ring, ${options.nodes} -> ${
    options.nodes + options.delta
  } nodes, replication ${options.replication} -> ${replicationEnd}, seed ${options.seed}`;
}
