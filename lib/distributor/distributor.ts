/**
 * The {@linkcode Distributor}: the networked {@linkcode BlockStore} of a node
 * or a client. Blocks live on the peers the ring names for them; the
 * distributor writes the copies, reads a valid one, and keeps a read cache.
 *
 * Semantics (compare `torus-original.md` §7 and §15):
 *
 * - **Writes**, level `all` (default): the block goes to the ring's owners in
 *   parallel; an owner that fails is replaced by the next peer of the
 *   permutation (hinted handoff: the rebalancer later moves the copy to its
 *   owner). The write is acknowledged only when `replication` copies
 *   succeeded, and FAILS otherwise: the original warned "only wrote block to
 *   x/y peers" and reported success, so an acknowledged write could have a
 *   single copy. The one exception is a ring with fewer members than its
 *   replication factor (degraded: `replication` is clamped by the ring to the
 *   members), which writes a copy on every member and warns once per ring.
 *   Level `one`: one copy, on this node when it owns the block, else on the
 *   first peer of the permutation that takes it. Level `local`: the local
 *   store (a write cache the rebalancer empties into the owners), falling
 *   back to `one` when it fails. A failed write may leave new copies on some
 *   peers; readers that check the block's digest (the `crc` layer) never
 *   take them for the old block.
 * - **Range writes** (in-place writes into a block of the open write session)
 *   go to the peers the block was last written to (remembered for
 *   {@linkcode PLACEMENTS_MAX} blocks; else the owners, then the rest of the
 *   permutation), with the caller's `expectDigest`, so a replica holding a
 *   stale or missing copy refuses instead of being patched. Every updated
 *   replica's sector CRCs must agree (else `BlockCorruptError`). When fewer
 *   than the required copies were updated, the updated block is read back
 *   from an updated replica and written whole to the next peers of the
 *   permutation (replacing stale copies there). Replicas that answered but
 *   refused (stale or corrupt copy) and were not replaced are asked to
 *   delete their copy; unreachable ones cannot be, so they keep a stale copy
 *   under the same ref: reads skip it when given the digest, and the
 *   rebalancer never deletes a copy on the strength of an owner copy whose
 *   digest differs. Peers that held an older placement of a block rewritten
 *   whole elsewhere are asked to delete it too.
 * - **Reads**: the read cache, then the local store when this node owns the
 *   block or holds a copy, then by read level: `block` (default) passes over
 *   the permutation in rounds with growing timeouts and backoff while some
 *   peer was unreachable ({@linkcode READ_ROUNDS_MAX}); `seq` one pass; `spread`
 *   asks the owners in parallel and takes the first valid answer, then tries
 *   the other peers in order (never hangs, also when this node is the only
 *   owner). A copy is valid when it has the right shape, its whole sectors
 *   match its sector CRCs, and its digest is `expectDigest` when given; an
 *   invalid copy is skipped like a missing one. Errors name the block and
 *   every peer tried: `BlockNotFoundError` (nobody has it),
 *   `BlockCorruptError` (only invalid copies), `PeerUnavailableError` (some
 *   peers unreachable), `NoPeersError` (no peer reachable, or an empty ring).
 * - **Cache**: whole blocks read from peers, bounded in bytes, invalidated by
 *   every write, range write and delete of the block (see `read_cache.ts`).
 * - **Delete**: on this node and every peer of the permutation, in parallel,
 *   best effort; true when any had the block.
 * - **Flush**: the local store and every peer written to (or deleted on)
 *   since its last successful flush, in parallel. An acknowledged flush
 *   means every block acknowledged before it is durable on as many peers
 *   as a write needs: the blocks a peer that does not confirm (killed,
 *   partitioned) acknowledged since its last flush are copied from a holder
 *   that confirmed to the next peers of their permutation, which are
 *   flushed in turn; the failed peer is then no longer waited for. The
 *   flush fails when that is impossible (no other peer, the block's
 *   placement forgotten, more than {@linkcode UNFLUSHED_BLOCKS_MAX} blocks),
 *   and the failed peer stays to be flushed by the next flush, until a new
 *   ring drops it.
 * - `hasBlock`, `blockRefs`, `numBlocks` and `usedBlocks` describe the local
 *   store (the rebalancer walks it).
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { BlockRef } from "../core/block_ref.ts";
import {
  blockDigest,
  firstBadSector,
  paddedSectorCrcs,
  sectorSizeBytes,
  sectorsPerBlock,
} from "../core/sector.ts";
import {
  BlockCorruptError,
  BlockNotFoundError,
  ClosedError,
  NoPeersError,
  OutOfSpaceError,
  PeerUnavailableError,
  TorusError,
} from "../errors.ts";
import { type Logger, stderrLogger } from "../log.ts";
import type { PeerClient, Transport } from "../peer/transport.ts";
import type { PeerPermutation, Ring } from "../ring/ring.ts";
import {
  type BlockRange,
  type BlockRead,
  type BlockStore,
  checkRange,
  checkWrite,
  copyBlockThrough,
} from "../storage/block_store.ts";
import { ReadCache } from "./read_cache.ts";

/** Timeout of one remote read in the first round, in milliseconds (original: 500 ms). */
export const READ_TIMEOUT_MS = 500;
/** Longest timeout of one remote read in later rounds of level `block`, in milliseconds. */
export const READ_TIMEOUT_MAX_MS = 8_000;
/**
 * Passes over the permutation a read of level `block` makes while peers are
 * unreachable. The original made 10 with timeouts doubling to 256 s (over 8
 * minutes for one block); 5 rounds of 0.5 to 8 s bound it to seconds.
 */
export const READ_ROUNDS_MAX = 5;
/** Wait before the second round of a level `block` read, in milliseconds; doubles each round. */
export const READ_BACKOFF_MS = 100;
/** Timeout of one remote write or range write, in milliseconds (original: 2 s). */
export const WRITE_TIMEOUT_MS = 2_000;
/** Timeout of one remote delete, in milliseconds. */
export const DELETE_TIMEOUT_MS = 2_000;
/** Timeout of one remote flush, in milliseconds: a flush waits for the peer's disk. */
export const FLUSH_TIMEOUT_MS = 30_000;
/**
 * Rounds of one flush: the peers written to, then the peers that took
 * copies of blocks a failed peer held unflushed, and so on.
 */
export const FLUSH_ROUNDS_MAX = 3;
/** Blocks a flush copies at once for a peer that did not confirm it. */
export const REPAIRS_IN_FLIGHT_MAX = 8;
/** Blocks whose last placement is remembered for range writes (about 100 bytes each). */
export const PLACEMENTS_MAX = 16_384;
/**
 * Blocks written to one peer since its last flush that the distributor
 * remembers, so that a flush the peer cannot confirm copies them elsewhere
 * (about 100 bytes each). A peer with more cannot be repaired that way: its
 * flush fails until it confirms or a new ring drops it.
 */
export const UNFLUSHED_BLOCKS_MAX = PLACEMENTS_MAX;

/** How reads find a copy. */
export type ReadLevel = "block" | "seq" | "spread";
/** How many copies a write makes before it is acknowledged. */
export type WriteLevel = "all" | "one" | "local";

/** The read levels, for flag parsing. */
export const READ_LEVELS: readonly ReadLevel[] = ["block", "seq", "spread"];
/** The write levels, for flag parsing. */
export const WRITE_LEVELS: readonly WriteLevel[] = ["all", "one", "local"];

/** Timeouts of a distributor, in milliseconds (defaults: the constants above). */
export interface DistributorTimeouts {
  /** First-round read timeout ({@linkcode READ_TIMEOUT_MS}). */
  readMs: number;
  /** Longest read timeout of later rounds ({@linkcode READ_TIMEOUT_MAX_MS}). */
  readMaxMs: number;
  /** First backoff between read rounds ({@linkcode READ_BACKOFF_MS}). */
  readBackoffMs: number;
  /** Write and range write timeout ({@linkcode WRITE_TIMEOUT_MS}). */
  writeMs: number;
  /** Delete timeout ({@linkcode DELETE_TIMEOUT_MS}). */
  deleteMs: number;
  /** Flush timeout ({@linkcode FLUSH_TIMEOUT_MS}). */
  flushMs: number;
}

/** What a {@linkcode Distributor} is built from. */
export interface DistributorOptions {
  /** This process's uuid (a ring member on a node; not one on a client). */
  selfUuid: string;
  /** The local store: a node's file store, or a client's small memory store. Owned: closed by `close()`. */
  local: BlockStore;
  /** How peers are reached. */
  transport: Transport;
  /** The current ring; later ones arrive through {@linkcode Distributor.setRing}. */
  ring: Ring;
  /** The address of a peer, or undefined when it is not alive. */
  peerAddress: (uuid: string) => string | undefined;
  /** Times retries and backoff. */
  clock: Clock;
  /** Default `block`. */
  readLevel?: ReadLevel;
  /** Default `all`. */
  writeLevel?: WriteLevel;
  /** Bytes of whole blocks read from peers kept in memory; 0 (default) disables the cache. */
  readCacheBytes?: number;
  /** Overrides of the default timeouts. */
  timeouts?: Partial<DistributorTimeouts>;
  /** Where warnings go; stderr at `warn` by default. */
  logger?: Logger;
}

/** Counters of a distributor since it was created, for `/metrics`. */
export interface DistributorStats {
  /** Reads served by the read cache. */
  cacheHits: number;
  /** Reads served by the local store. */
  localReads: number;
  /** Reads served by a peer. */
  remoteReads: number;
  /** Reads that failed. */
  failedReads: number;
  /** Copies skipped because they were stale or corrupt. */
  invalidCopies: number;
  /** Writes (whole or range) acknowledged. */
  writes: number;
  /** Acknowledged writes that needed a peer beyond the owners. */
  handoffWrites: number;
  /** Acknowledged writes on a ring with fewer members than its replication. */
  degradedWrites: number;
  /** Writes that failed. */
  failedWrites: number;
}

type Outcome = "missing" | "corrupt" | "full" | "unavailable";

interface Attempt {
  uuid: string;
  outcome: Outcome;
  message: string;
}

/** Classifies an error of one peer; rethrows bugs. */
function outcomeOf(error: unknown): Outcome {
  if (error instanceof BlockNotFoundError) return "missing";
  if (error instanceof BlockCorruptError) return "corrupt";
  if (error instanceof OutOfSpaceError) return "full";
  // A peer refusing our (checked) arguments disagrees with us: a failure of that peer.
  if (error instanceof TorusError || error instanceof RangeError) return "unavailable";
  throw error;
}

function attemptOf(uuid: string, error: unknown): Attempt {
  return { uuid, outcome: outcomeOf(error), message: (error as Error).message };
}

function describeAttempts(attempts: Iterable<Attempt>): string {
  const parts = [...attempts].map((a) => `${a.uuid}: ${a.outcome} (${a.message})`);
  return parts.length === 0 ? "no peer tried" : `tried ${parts.join("; ")}`;
}

function unique(uuids: Iterable<string>): string[] {
  return [...new Set(uuids)];
}

function sameCrcs(a: Uint32Array, b: Uint32Array): boolean {
  return a.length === b.length && a.every((crc, i) => crc === b[i]);
}

/** The local store behind the peer interface, so that self is one more peer. */
function localPeer(store: BlockStore): PeerClient {
  return {
    address: "local",
    readBlock: (ref, range) => store.readBlock(ref, range),
    writeBlock: async (ref, data) => {
      await store.writeBlock(ref, data);
    },
    writeBlockRange: (ref, offsetBytes, data, expectDigest) =>
      store.writeBlockRange(ref, offsetBytes, data, expectDigest),
    deleteBlock: (ref) => store.deleteBlock(ref),
    hasBlocks: (refs) => Promise.all(refs.map((ref) => store.hasBlock(ref))),
    flush: () => store.flush(),
    close: () => Promise.resolve(),
  };
}

/**
 * The networked block store of a node or a client.
 *
 * @example Usage
 * ```ts
 * import { Distributor } from "./distributor.ts";
 * import { TestRing } from "./_test_ring.ts";
 * import { ManualClock } from "../clock.ts";
 * import { BlockRef, BlockType } from "../core/block_ref.ts";
 * import { MemoryTransport } from "../peer/memory_transport.ts";
 * import { MemoryBlockStore } from "../storage/memory_block_store.ts";
 * const clock = new ManualClock(0);
 * const transport = new MemoryTransport({ clock });
 * const store = () => new MemoryBlockStore({ blockSizeBytes: 4096, numBlocks: 16 });
 * await transport.listen("mem://b", store());
 * const node = new Distributor({
 *   selfUuid: "a", local: store(), transport, clock,
 *   ring: new TestRing(1, 2, ["a", "b"]),
 *   peerAddress: (uuid) => `mem://${uuid}`,
 * });
 * const ref = new BlockRef(1, BlockType.data, 1, 1);
 * await node.writeBlock(ref, new Uint8Array([42])); // one copy on a, one on b
 * if ((await node.readBlock(ref)).data[0] !== 42) throw new Error("wrong bytes");
 * await node.close();
 * ```
 */
export class Distributor implements BlockStore {
  /** The engine name. */
  readonly kind = "distributor";
  /** Size of every block: the local store's, which is the cluster's. */
  readonly blockSizeBytes: number;
  /** This process's uuid. */
  readonly selfUuid: string;
  /** How reads find a copy. */
  readonly readLevel: ReadLevel;
  /** How many copies a write makes. */
  readonly writeLevel: WriteLevel;
  readonly #local: BlockStore;
  readonly #localPeer: PeerClient;
  readonly #transport: Transport;
  readonly #peerAddress: (uuid: string) => string | undefined;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #timeouts: DistributorTimeouts;
  readonly #cache: ReadCache;
  #ring: Ring;
  #clients = new Map<string, PeerClient>();
  /** Where each recently written block was written: ref key → uuids. */
  #placements = new Map<string, string[]>();
  /**
   * Remote peers that acknowledged writes or deletes since their last flush,
   * with the blocks written (ref key → ref), or null past
   * {@linkcode UNFLUSHED_BLOCKS_MAX}.
   */
  #unflushed = new Map<string, Map<string, BlockRef> | null>();
  /** Writes, deletes and repairs in progress, by ref key: one at a time per block. */
  #busy = new Map<string, Promise<void>>();
  #warnedDegradedVersion = -1;
  #closed = false;
  #stats: DistributorStats = {
    cacheHits: 0,
    localReads: 0,
    remoteReads: 0,
    failedReads: 0,
    invalidCopies: 0,
    writes: 0,
    handoffWrites: 0,
    degradedWrites: 0,
    failedWrites: 0,
  };

  constructor(options: DistributorOptions) {
    this.selfUuid = options.selfUuid;
    this.#local = options.local;
    this.#localPeer = localPeer(options.local);
    this.blockSizeBytes = options.local.blockSizeBytes;
    this.#transport = options.transport;
    this.#ring = options.ring;
    this.#peerAddress = options.peerAddress;
    this.#clock = options.clock;
    this.readLevel = options.readLevel ?? "block";
    this.writeLevel = options.writeLevel ?? "all";
    this.#cache = new ReadCache(options.readCacheBytes ?? 0);
    this.#logger = options.logger ?? stderrLogger("warn", "distributor");
    this.#timeouts = {
      readMs: READ_TIMEOUT_MS,
      readMaxMs: READ_TIMEOUT_MAX_MS,
      readBackoffMs: READ_BACKOFF_MS,
      writeMs: WRITE_TIMEOUT_MS,
      deleteMs: DELETE_TIMEOUT_MS,
      flushMs: FLUSH_TIMEOUT_MS,
      ...options.timeouts,
    };
  }

  /** The current ring. */
  get ring(): Ring {
    return this.#ring;
  }

  /** The local store (the rebalancer reads and deletes its copies). */
  get localStore(): BlockStore {
    return this.#local;
  }

  /** The timeouts in force. */
  get timeouts(): Readonly<DistributorTimeouts> {
    return this.#timeouts;
  }

  /** A copy of the counters. */
  stats(): DistributorStats {
    return { ...this.#stats };
  }

  /**
   * Installs a newer ring; returns false (and keeps the current one) when
   * `ring` is not newer: rings never go backwards. Peers that left the ring
   * are no longer waited for by `flush()`.
   */
  setRing(ring: Ring): boolean {
    if (ring.version <= this.#ring.version) {
      if (ring.version < this.#ring.version) {
        this.#logger.log(
          "warn",
          `ignoring ring version ${ring.version}: already at version ${this.#ring.version}`,
        );
      }
      return false;
    }
    this.#ring = ring;
    const members = new Set(ring.members().map((peer) => peer.uuid));
    for (const uuid of this.#unflushed.keys()) {
      if (!members.has(uuid)) this.#unflushed.delete(uuid);
    }
    return true;
  }

  /**
   * A client of peer `uuid` (the local store for this node's own uuid).
   *
   * @throws {PeerUnavailableError} when the peer is not alive or cannot be dialled.
   */
  peerClient(uuid: string): PeerClient {
    if (uuid === this.selfUuid) return this.#localPeer;
    const address = this.#peerAddress(uuid);
    if (address === undefined) {
      throw new PeerUnavailableError(`Cannot reach peer ${uuid}: it is not alive`);
    }
    let client = this.#clients.get(uuid);
    if (client?.address !== address) {
      client?.close().catch(() => {});
      try {
        client = this.#transport.dial(address);
      } catch (error) {
        throw new PeerUnavailableError(
          `Cannot dial peer ${uuid} at ${address}: ${(error as Error).message}`,
          { cause: error },
        );
      }
      this.#clients.set(uuid, client);
    }
    return client;
  }

  /** Capacity of the LOCAL store, in blocks. */
  numBlocks(): number {
    return this.#local.numBlocks();
  }

  /** Blocks in the LOCAL store. */
  usedBlocks(): number {
    return this.#local.usedBlocks();
  }

  /** Whether the LOCAL store holds `ref`. */
  hasBlock(ref: BlockRef): Promise<boolean> {
    this.#checkOpen();
    return this.#local.hasBlock(ref);
  }

  /** The refs of the LOCAL store. */
  blockRefs(): BlockRef[] {
    this.#checkOpen();
    return this.#local.blockRefs();
  }

  // ---------------------------------------------------------------- reads

  /**
   * Reads `ref` (or `range` of it) from the cache, the local store or a peer,
   * skipping copies that do not match `expectDigest`.
   *
   * @throws {BlockNotFoundError} when no peer has it.
   * @throws {BlockCorruptError} when every copy found is invalid.
   * @throws {PeerUnavailableError} when no reachable peer has a valid copy and some were unreachable.
   * @throws {NoPeersError} when no peer could be reached, or the ring is empty.
   * @throws {RangeError} when `range` is outside the block.
   */
  async readBlock(ref: BlockRef, range?: BlockRange, expectDigest?: number): Promise<BlockRead> {
    this.#checkOpen();
    const wanted = checkRange(this.blockSizeBytes, range);
    const cached = this.#cache.get(ref, wanted);
    if (cached !== undefined) {
      if (expectDigest === undefined || blockDigest(cached.sectorCrcs) === expectDigest) {
        this.#stats.cacheHits++;
        return cached;
      }
      this.#cache.invalidate(ref);
    }
    const whole = wanted.lengthBytes === this.blockSizeBytes;
    const ticket = this.#cache.begin(ref);
    try {
      const found = await this.#find(ref, wanted, expectDigest);
      if (found.remote) {
        this.#stats.remoteReads++;
        if (whole) this.#cache.fill(ticket, found.read);
      } else {
        this.#stats.localReads++;
      }
      return found.read;
    } catch (error) {
      this.#stats.failedReads++;
      throw error;
    } finally {
      this.#cache.end(ticket);
    }
  }

  async #find(
    ref: BlockRef,
    range: BlockRange,
    expectDigest: number | undefined,
  ): Promise<{ read: BlockRead; remote: boolean }> {
    let perm: PeerPermutation | undefined;
    let noPeers: NoPeersError | undefined;
    try {
      perm = this.#ring.getPeers(ref);
    } catch (error) {
      if (!(error instanceof NoPeersError)) throw error;
      noPeers = error; // a local copy (write level local) is still served
    }
    const owners = perm?.peers.slice(0, perm.replication) ?? [];
    const attempts = new Map<string, Attempt>();
    const ask = (uuid: string, timeoutMs?: number) =>
      this.#tryRead(uuid, ref, range, expectDigest, timeoutMs, attempts);

    const selfOwns = owners.includes(this.selfUuid);
    if (selfOwns || await this.#local.hasBlock(ref).catch(() => false)) {
      const read = await ask(this.selfUuid);
      if (read !== undefined) return { read, remote: false };
    }
    if (perm === undefined) throw noPeers!;
    const placement = this.#placements.get(ref.key()) ?? [];
    const remote = unique([...placement, ...perm.peers]).filter((uuid) => uuid !== this.selfUuid);
    const { readMs, readMaxMs, readBackoffMs } = this.#timeouts;
    let read: BlockRead | undefined;
    switch (this.readLevel) {
      case "seq":
        read = await this.#readInTurn(remote, (uuid) => ask(uuid, readMs));
        break;
      case "spread": {
        const first = (placement.length > 0 ? placement : owners)
          .filter((uuid) => uuid !== this.selfUuid);
        read = await this.#readFirstOf(first, (uuid) => ask(uuid, readMs));
        read ??= await this.#readInTurn(
          remote.filter((uuid) => !first.includes(uuid)),
          (uuid) => ask(uuid, readMs),
        );
        break;
      }
      case "block":
        for (let round = 0; round < READ_ROUNDS_MAX && read === undefined; round++) {
          // Missing and invalid copies are answers; only unreachable peers are asked again.
          const candidates = remote.filter((uuid) => {
            const outcome = attempts.get(uuid)?.outcome;
            return outcome === undefined || outcome === "unavailable";
          });
          if (candidates.length === 0) break;
          if (round > 0) await this.#clock.sleep(readBackoffMs * 2 ** (round - 1));
          const timeoutMs = Math.min(readMs * 2 ** round, readMaxMs);
          read = await this.#readInTurn(candidates, (uuid) => ask(uuid, timeoutMs));
        }
        break;
    }
    if (read !== undefined) return { read, remote: true };
    throw this.#readError(ref, perm, attempts);
  }

  async #readInTurn(
    uuids: string[],
    ask: (uuid: string) => Promise<BlockRead | undefined>,
  ): Promise<BlockRead | undefined> {
    for (const uuid of uuids) {
      const read = await ask(uuid);
      if (read !== undefined) return read;
    }
    return undefined;
  }

  #readFirstOf(
    uuids: string[],
    ask: (uuid: string) => Promise<BlockRead | undefined>,
  ): Promise<BlockRead | undefined> {
    if (uuids.length === 0) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      let pending = uuids.length;
      for (const uuid of uuids) {
        ask(uuid).then((read) => {
          pending--;
          if (read !== undefined) resolve(read);
          else if (pending === 0) resolve(undefined);
        }, reject);
      }
    });
  }

  /** One read from one peer: the copy when valid, else undefined with the reason recorded. */
  async #tryRead(
    uuid: string,
    ref: BlockRef,
    range: BlockRange,
    expectDigest: number | undefined,
    timeoutMs: number | undefined,
    attempts: Map<string, Attempt>,
  ): Promise<BlockRead | undefined> {
    let read: BlockRead;
    try {
      read = await this.peerClient(uuid).readBlock(ref, range, { timeoutMs });
    } catch (error) {
      attempts.set(uuid, attemptOf(uuid, error));
      return undefined;
    }
    const problem = this.#invalid(read, range, expectDigest, uuid !== this.selfUuid);
    if (problem !== undefined) {
      this.#stats.invalidCopies++;
      attempts.set(uuid, { uuid, outcome: "corrupt", message: problem });
      return undefined;
    }
    return read;
  }

  /** Why a copy cannot be returned, or undefined when it can. */
  #invalid(
    read: BlockRead,
    range: BlockRange,
    expectDigest: number | undefined,
    checkSectors: boolean,
  ): string | undefined {
    const sectors = sectorsPerBlock(this.blockSizeBytes);
    if (read.sectorCrcs.length !== sectors) {
      return `the reply has ${read.sectorCrcs.length} sector CRCs, not ${sectors}`;
    }
    if (read.data.length !== range.lengthBytes) {
      return `the reply has ${read.data.length} bytes, not ${range.lengthBytes}`;
    }
    if (expectDigest !== undefined && blockDigest(read.sectorCrcs) !== expectDigest) {
      return "the copy does not match the expected digest (stale or replaced)";
    }
    if (checkSectors) {
      // Whole sectors in the reply are checked end to end: the network may flip bits too.
      const sector = sectorSizeBytes(this.blockSizeBytes);
      const first = Math.ceil(range.offsetBytes / sector);
      const end = Math.floor((range.offsetBytes + range.lengthBytes) / sector);
      if (end > first) {
        const start = first * sector - range.offsetBytes;
        const whole = read.data.subarray(start, start + (end - first) * sector);
        const bad = firstBadSector(whole, sector, read.sectorCrcs, first);
        if (bad >= 0) return `sector ${bad} of the reply fails its checksum`;
      }
    }
    return undefined;
  }

  #readError(ref: BlockRef, perm: PeerPermutation, attempts: Map<string, Attempt>): Error {
    const all = [...attempts.values()];
    const tried = describeAttempts(all);
    const unreachable = all.filter((a) => a.outcome === "unavailable").length;
    if (all.length === 0 || unreachable === all.length) {
      return new NoPeersError(
        `Cannot read ${ref}: no peer could be reached (peers ${perm.peers.join(", ")}; ${tried})`,
      );
    }
    if (unreachable > 0) {
      return new PeerUnavailableError(
        `Cannot read ${ref}: no reachable peer has a valid copy and some peers could not be reached (${tried})`,
      );
    }
    if (all.some((a) => a.outcome === "corrupt")) {
      return new BlockCorruptError(
        `Cannot read ${ref}: every copy found is corrupt or does not match the expected digest (${tried})`,
      );
    }
    return new BlockNotFoundError(`Cannot read ${ref}: no peer has it (${tried})`);
  }

  // ---------------------------------------------------------------- writes

  /**
   * Writes `ref` at the write level; see the module documentation.
   *
   * @throws {NoPeersError} when fewer copies than required could be written.
   * @throws {OutOfSpaceError} when that is because every peer tried is full.
   * @throws {RangeError} when `data` is longer than a block.
   */
  async writeBlock(ref: BlockRef, data: Uint8Array, offsetBytes = 0): Promise<Uint32Array> {
    this.#checkOpen();
    checkWrite(ref, this.blockSizeBytes, offsetBytes, data.length);
    if (offsetBytes > 0) {
      // Peers store short data zero-padded at its end: the zeros before it travel.
      const block = new Uint8Array(offsetBytes + data.length);
      block.set(data, offsetBytes);
      data = block;
    }
    const key = ref.key();
    await using _ = await this.#exclusive(key);
    this.#cache.invalidate(ref);
    try {
      const perm = this.#ring.getPeers(ref);
      const previous = this.#placements.get(key) ?? [];
      const { written, attempts } = await this.#writeCopies(
        ref,
        this.#writeOrder(perm),
        this.#copiesNeeded(perm),
        (client) => client.writeBlock(ref, data, { timeoutMs: this.#timeouts.writeMs }),
      );
      this.#checkCopies(ref, perm, written, attempts);
      this.#remember(ref, written);
      // Peers that held this block before and were not written now keep an older copy.
      await this.#deleteOn(ref, previous.filter((uuid) => !written.includes(uuid)));
      return paddedSectorCrcs(data, this.blockSizeBytes);
    } catch (error) {
      this.#placements.delete(key);
      this.#stats.failedWrites++;
      throw error;
    } finally {
      this.#cache.invalidate(ref);
    }
  }

  /**
   * Copy-on-write across the cluster: reads `source` from its replicas and
   * writes the copy to `ref`'s owners (see {@linkcode copyBlockThrough}).
   */
  copyBlock(
    source: BlockRef,
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    return copyBlockThrough(this, source, ref, offsetBytes, data, expectDigest);
  }

  /**
   * Overwrites bytes of `ref` in place on the replicas that hold it, and
   * returns its new sector CRCs; see the module documentation.
   *
   * @throws {BlockNotFoundError} when no peer has it.
   * @throws {BlockCorruptError} when every copy is stale or corrupt, or the replicas disagree.
   * @throws {NoPeersError} when fewer copies than required could be updated.
   * @throws {RangeError} when the range is outside the block.
   */
  async writeBlockRange(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    this.#checkOpen();
    checkRange(this.blockSizeBytes, { offsetBytes, lengthBytes: data.length });
    const key = ref.key();
    await using _ = await this.#exclusive(key);
    this.#cache.invalidate(ref);
    try {
      const perm = this.#ring.getPeers(ref);
      const need = this.#copiesNeeded(perm);
      const order = this.#writeOrder(perm);
      const primary = this.#placements.get(key) ?? order.slice(0, need);
      const attempts = new Map<string, Attempt>();
      const updated: { uuid: string; crcs: Uint32Array }[] = [];
      const patch = async (uuid: string) => {
        try {
          const crcs = await this.peerClient(uuid).writeBlockRange(
            ref,
            offsetBytes,
            data,
            expectDigest,
            {
              timeoutMs: this.#timeouts.writeMs,
            },
          );
          updated.push({ uuid, crcs });
          this.#noteUnflushed(uuid, ref);
        } catch (error) {
          attempts.set(uuid, attemptOf(uuid, error));
        }
      };
      await Promise.all(primary.map(patch));
      // Placement unknown or out of date: the block may be held further down the permutation.
      for (const uuid of order) {
        if (updated.length > 0) break;
        if (!primary.includes(uuid)) await patch(uuid);
      }
      if (updated.length === 0) throw this.#rangeError(ref, attempts.values());
      const crcs = updated[0]!.crcs;
      const disagreeing = updated.filter((u) => !sameCrcs(u.crcs, crcs));
      if (disagreeing.length > 0 || crcs.length !== sectorsPerBlock(this.blockSizeBytes)) {
        throw new BlockCorruptError(
          `Cannot write to ${ref}: its replicas ${
            updated.map((u) => u.uuid).join(", ")
          } disagree after the write`,
        );
      }
      const holders = updated.map((u) => u.uuid);
      if (holders.length < need) {
        // Too few copies had the block: copy the updated block whole to the next peers.
        const block = await this.#readBack(ref, holders, blockDigest(crcs), attempts);
        const candidates = order.filter((uuid) =>
          !holders.includes(uuid) && attempts.get(uuid)?.outcome !== "unavailable"
        );
        const more = await this.#writeCopies(
          ref,
          candidates,
          need - holders.length,
          (client) => client.writeBlock(ref, block, { timeoutMs: this.#timeouts.writeMs }),
        );
        for (const attempt of more.attempts) attempts.set(attempt.uuid, attempt);
        holders.push(...more.written);
        if (holders.length < need) {
          throw new NoPeersError(
            `Cannot write to ${ref}: only ${holders.length} of ${need} copies could be updated (${
              describeAttempts(attempts.values())
            })`,
          );
        }
        this.#stats.handoffWrites++;
      }
      this.#noteDegraded(perm);
      this.#stats.writes++;
      // Replicas that answered but held a stale or corrupt copy, and were not replaced.
      const stale = [...attempts.values()]
        .filter((a) => a.outcome === "corrupt" && !holders.includes(a.uuid))
        .map((a) => a.uuid);
      this.#remember(ref, holders);
      await this.#deleteOn(ref, stale);
      return crcs.slice();
    } catch (error) {
      this.#placements.delete(key);
      this.#stats.failedWrites++;
      throw error;
    } finally {
      this.#cache.invalidate(ref);
    }
  }

  #rangeError(ref: BlockRef, attempts: Iterable<Attempt>): Error {
    const all = [...attempts];
    const tried = describeAttempts(all);
    if (all.some((a) => a.outcome === "unavailable")) {
      return new NoPeersError(
        `Cannot write to ${ref}: no reachable peer could update it (${tried})`,
      );
    }
    if (all.some((a) => a.outcome === "corrupt")) {
      return new BlockCorruptError(
        `Cannot write to ${ref}: every copy is corrupt or does not match the expected digest (${tried})`,
      );
    }
    return new BlockNotFoundError(`Cannot write to ${ref}: no peer has it (${tried})`);
  }

  /** The whole block from one of `holders`, checked against `digest`. */
  async #readBack(
    ref: BlockRef,
    holders: string[],
    digest: number,
    attempts: Map<string, Attempt>,
  ): Promise<Uint8Array> {
    const whole = { offsetBytes: 0, lengthBytes: this.blockSizeBytes };
    for (const uuid of holders) {
      const copy = await this.#tryRead(uuid, ref, whole, digest, this.#timeouts.readMs, new Map());
      if (copy !== undefined) return copy.data;
    }
    throw new NoPeersError(
      `Cannot write to ${ref}: it was updated on ${
        holders.join(", ")
      } only, and could not be read back to copy it (${describeAttempts(attempts.values())})`,
    );
  }

  /** Copies a write must make before it is acknowledged. */
  #copiesNeeded(perm: PeerPermutation): number {
    return this.writeLevel === "all" ? perm.replication : 1;
  }

  /** Peers to write to, in order of preference, for the write level. */
  #writeOrder(perm: PeerPermutation): string[] {
    const self = this.selfUuid;
    switch (this.writeLevel) {
      case "all":
        return perm.peers;
      case "one": {
        const selfOwns = perm.peers.slice(0, perm.replication).includes(self);
        return selfOwns ? unique([self, ...perm.peers]) : perm.peers;
      }
      case "local":
        return unique([self, ...perm.peers]);
    }
  }

  /**
   * Sends to `need` candidates in parallel; each failure is replaced by the
   * next candidate. Returns the peers written and the failures.
   */
  async #writeCopies(
    ref: BlockRef,
    candidates: string[],
    need: number,
    send: (client: PeerClient) => Promise<unknown>,
  ): Promise<{ written: string[]; attempts: Attempt[] }> {
    const written: string[] = [];
    const attempts: Attempt[] = [];
    let next = 0;
    const worker = async () => {
      while (next < candidates.length) {
        const uuid = candidates[next++]!;
        try {
          await send(this.peerClient(uuid));
          written.push(uuid);
          this.#noteUnflushed(uuid, ref);
          return;
        } catch (error) {
          attempts.push(attemptOf(uuid, error));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(need, candidates.length) }, worker));
    return { written, attempts };
  }

  /** Throws unless the write made enough copies; counts it. */
  #checkCopies(ref: BlockRef, perm: PeerPermutation, written: string[], attempts: Attempt[]): void {
    const need = this.#copiesNeeded(perm);
    if (written.length < need) {
      const tried = describeAttempts(attempts);
      if (attempts.length > 0 && attempts.every((a) => a.outcome === "full")) {
        throw new OutOfSpaceError(
          `Cannot write ${ref}: only ${written.length} of ${need} copies written, the peers are full (${tried})`,
        );
      }
      throw new NoPeersError(
        `Cannot write ${ref}: only ${written.length} of ${need} copies could be written (${tried})`,
      );
    }
    const owners = perm.peers.slice(0, need);
    if (this.writeLevel === "all" && written.some((uuid) => !owners.includes(uuid))) {
      this.#stats.handoffWrites++;
    }
    this.#noteDegraded(perm);
    this.#stats.writes++;
  }

  /** Warns once per ring when the ring has fewer members than its replication. */
  #noteDegraded(perm: PeerPermutation): void {
    if (this.writeLevel !== "all" || perm.replication >= this.#ring.replication) return;
    this.#stats.degradedWrites++;
    if (this.#warnedDegradedVersion === this.#ring.version) return;
    this.#warnedDegradedVersion = this.#ring.version;
    this.#logger.log(
      "warn",
      `ring version ${this.#ring.version} has ${perm.replication} members for replication ${this.#ring.replication}: blocks are written to ${perm.replication} peers until peers are added`,
    );
  }

  #remember(ref: BlockRef, uuids: string[]): void {
    const key = ref.key();
    this.#placements.delete(key);
    this.#placements.set(key, [...uuids]);
    if (this.#placements.size > PLACEMENTS_MAX) {
      this.#placements.delete(this.#placements.keys().next().value!);
    }
  }

  /** Best-effort deletes of `ref` on `uuids`; returns whether any had it. */
  async #deleteOn(ref: BlockRef, uuids: string[]): Promise<boolean> {
    const results = await Promise.all(uuids.map(async (uuid) => {
      try {
        const had = await this.peerClient(uuid).deleteBlock(ref, {
          timeoutMs: this.#timeouts.deleteMs,
        });
        if (had) this.#noteUnflushed(uuid);
        return had;
      } catch (error) {
        outcomeOf(error); // rethrows bugs
        return false;
      }
    }));
    return results.some(Boolean);
  }

  // ---------------------------------------------------------------- the rest

  /**
   * Deletes `ref` here and on every peer of its permutation (best effort:
   * unreachable peers keep their copy). True when any had it.
   */
  async deleteBlock(ref: BlockRef): Promise<boolean> {
    this.#checkOpen();
    await using _ = await this.#exclusive(ref.key());
    this.#cache.invalidate(ref);
    this.#placements.delete(ref.key());
    let peers: string[] = [];
    try {
      peers = this.#ring.getPeers(ref).peers;
    } catch (error) {
      if (!(error instanceof NoPeersError)) throw error;
    }
    try {
      return await this.#deleteOn(ref, unique([this.selfUuid, ...peers]));
    } finally {
      this.#cache.invalidate(ref);
    }
  }

  /**
   * Makes every write and delete acknowledged so far durable: flushes the
   * local store and every peer written since its last flush, in parallel.
   * A peer that does not confirm (down, partitioned, failing) may lose the
   * copies it acknowledged since its last flush: each of those blocks is
   * copied from a confirmed holder to the next peer of its permutation, and
   * that peer is flushed in turn, so the flush succeeds with `replication`
   * durable copies of every block (the rebalancer later moves the extra
   * copies to their owners). The failed peer is then no longer waited for.
   *
   * @throws {PeerUnavailableError} when some block could not be made durable
   * on enough peers (the peers that did not confirm are flushed again next time).
   */
  async flush(): Promise<void> {
    this.#checkOpen();
    const local = this.#local.flush().then(() => null, (error: unknown) => ({ error }));
    const failures: Attempt[] = [];
    let confirmed = 0;
    // Copies made for a failed peer land on other peers, which the next round flushes.
    let copied = this.#unflushed.size > 0;
    for (let round = 0; copied; round++) {
      copied = false;
      if (round === FLUSH_ROUNDS_MAX) {
        failures.push(
          ...[...this.#unflushed.keys()].map((uuid): Attempt => ({
            uuid,
            outcome: "unavailable",
            message: `copies made for failed peers were not confirmed after ${round} rounds`,
          })),
        );
        break;
      }
      const pending = this.#unflushed;
      this.#unflushed = new Map();
      const failed = new Map<string, Attempt>();
      await Promise.all([...pending.keys()].map(async (uuid) => {
        try {
          await this.peerClient(uuid).flush({ timeoutMs: this.#timeouts.flushMs });
          confirmed++;
        } catch (error) {
          failed.set(uuid, attemptOf(uuid, error));
        }
      }));
      for (const [uuid, attempt] of failed) {
        const refs = pending.get(uuid)!;
        const unsafe = refs === null ? null : await this.#repairCopies(refs, failed);
        if (unsafe === null || unsafe.size > 0) {
          failures.push(attempt);
          this.#mergeUnflushed(uuid, unsafe);
          continue;
        }
        this.#logger.log(
          "warn",
          `peer ${uuid} did not confirm a flush (${attempt.message}): the ${
            refs!.size
          } block(s) it acknowledged since its last flush now have copies on other peers`,
        );
        copied ||= refs!.size > 0;
      }
      if (failures.length > 0) break;
    }
    const localFailure = await local;
    if (localFailure !== null) throw localFailure.error;
    if (failures.length > 0) {
      throw new PeerUnavailableError(
        `Cannot flush: ${failures.length} peer(s) did not confirm, and the blocks they acknowledged since their last flush could not all be copied to other peers (${confirmed} flushes confirmed; ${
          describeAttempts(failures)
        })`,
      );
    }
  }

  /**
   * Copies each block of `refs` (written to a peer that then failed to
   * flush) from a holder that did not fail to peers that do not hold it,
   * until it has as many copies as a write needs without the `failed` peers.
   * Returns the refs that could not be copied (all of them when unknown).
   */
  async #repairCopies(
    refs: Map<string, BlockRef>,
    failed: Map<string, Attempt>,
  ): Promise<Map<string, BlockRef>> {
    const unsafe = new Map<string, BlockRef>();
    const queue = [...refs];
    const worker = async () => {
      for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
        const [key, ref] = next;
        if (this.#closed) {
          unsafe.set(key, ref);
          continue;
        }
        await using _ = await this.#exclusive(key);
        if (!(await this.#repairCopy(ref, failed))) unsafe.set(key, ref);
      }
    };
    await Promise.all(Array.from({ length: REPAIRS_IN_FLIGHT_MAX }, worker));
    return unsafe;
  }

  /** One block of {@linkcode Distributor.#repairCopies}; true when it is safe. */
  async #repairCopy(ref: BlockRef, failed: Map<string, Attempt>): Promise<boolean> {
    const key = ref.key();
    const holders = this.#placements.get(key);
    // Unknown placement (forgotten, or the last write failed): no known good copy to take.
    if (holders === undefined) return false;
    if (!holders.some((uuid) => failed.has(uuid))) return true; // rewritten elsewhere since
    const live = holders.filter((uuid) => !failed.has(uuid));
    let perm: PeerPermutation;
    try {
      perm = this.#ring.getPeers(ref);
    } catch {
      return false;
    }
    const need = this.#copiesNeeded(perm) - live.length;
    if (need > 0) {
      const copy = await this.#firstGoodCopy(ref, live, new Map());
      if (copy === undefined) return false;
      const data = copy.data;
      const candidates = this.#writeOrder(perm).filter((uuid) =>
        !live.includes(uuid) && !failed.has(uuid)
      );
      const { written } = await this.#writeCopies(
        ref,
        candidates,
        need,
        (client) => client.writeBlock(ref, data, { timeoutMs: this.#timeouts.writeMs }),
      );
      live.push(...written);
      if (written.length < need) {
        this.#remember(ref, [...live, ...holders.filter((uuid) => failed.has(uuid))]);
        return false;
      }
      this.#stats.handoffWrites++;
    }
    this.#remember(ref, live);
    return true;
  }

  /**
   * Rewrites this node's copy of `ref` from another peer's copy that passes
   * its checks, after the scrubber found the local one corrupt: the ring's
   * peers for `ref` are asked in order. Returns the uuid copied from, or null
   * when no peer had a good copy; the local copy is then left as it was
   * (reads keep refusing it and read another copy where there is one).
   */
  async repairLocalCopy(ref: BlockRef): Promise<string | null> {
    this.#checkOpen();
    await using _ = await this.#exclusive(ref.key());
    let perm: PeerPermutation;
    try {
      perm = this.#ring.getPeers(ref);
    } catch (error) {
      if (error instanceof NoPeersError) return null;
      throw error;
    }
    const attempts = new Map<string, Attempt>();
    const others = perm.peers.filter((uuid) => uuid !== this.selfUuid);
    const copy = await this.#firstGoodCopy(ref, others, attempts);
    if (copy !== undefined) {
      await this.#local.writeBlock(ref, copy.data);
      return copy.uuid;
    }
    this.#logger.log(
      "debug",
      `no good copy of ${ref.key()} to repair from: ${describeAttempts(attempts.values())}`,
    );
    return null;
  }

  /**
   * The whole block `ref` from the first of `uuids`, in order, whose copy
   * passes its checks; undefined when none does (the reasons in `attempts`).
   */
  async #firstGoodCopy(
    ref: BlockRef,
    uuids: readonly string[],
    attempts: Map<string, Attempt>,
  ): Promise<{ uuid: string; data: Uint8Array } | undefined> {
    const whole = { offsetBytes: 0, lengthBytes: this.blockSizeBytes };
    for (const uuid of uuids) {
      const copy = await this.#tryRead(
        uuid,
        ref,
        whole,
        undefined,
        this.#timeouts.readMs,
        attempts,
      );
      if (copy !== undefined) return { uuid, data: copy.data };
    }
    return undefined;
  }

  /** Records that `uuid` acknowledged a write of `ref` (or a delete) it has not flushed yet. */
  #noteUnflushed(uuid: string, ref?: BlockRef): void {
    if (uuid === this.selfUuid) return;
    let refs = this.#unflushed.get(uuid);
    if (refs === undefined) {
      refs = new Map();
      this.#unflushed.set(uuid, refs);
    }
    if (refs === null || ref === undefined) return;
    refs.set(ref.key(), ref);
    if (refs.size > UNFLUSHED_BLOCKS_MAX) this.#unflushed.set(uuid, null);
  }

  /** Puts back what a failed flush of `uuid` left unsafe (null: unknown). */
  #mergeUnflushed(uuid: string, refs: Map<string, BlockRef> | null): void {
    if (refs === null) {
      this.#unflushed.set(uuid, null);
      return;
    }
    this.#noteUnflushed(uuid);
    for (const ref of refs.values()) this.#noteUnflushed(uuid, ref);
  }

  /**
   * Waits for the operations in progress on `key`, then holds it until the
   * returned handle is disposed.
   */
  async #exclusive(key: string): Promise<AsyncDisposable> {
    const previous = this.#busy.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => release = resolve);
    const chained = previous ? previous.then(() => mine) : mine;
    this.#busy.set(key, chained);
    await previous;
    return {
      [Symbol.asyncDispose]: async () => {
        release();
        if (this.#busy.get(key) === chained) this.#busy.delete(key);
      },
    };
  }

  /** Flushes, then closes the peer clients and the local store (even when the flush fails). */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
    } finally {
      this.#closed = true;
      this.#cache.clear();
      const clients = [...this.#clients.values()];
      this.#clients.clear();
      await Promise.allSettled(clients.map((client) => client.close()));
      await this.#local.close();
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError("Cannot use the distributor: it is closed");
  }
}
