/**
 * The BlockStore contract: a node's local store of fixed-size blocks keyed by
 * {@linkcode BlockRef}.
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";
import { blockDigest } from "../core/sector.ts";
import { BlockCorruptError } from "../errors.ts";

/** What {@linkcode BlockStore.readBlock} returns. */
export interface BlockRead {
  /** The requested bytes; owned by the caller. */
  data: Uint8Array;
  /**
   * CRC-32 of every sector of the whole block as stored (see `core/sector.ts`).
   * The `crc` blockset layer checks their digest against the INode.
   */
  sectorCrcs: Uint32Array;
}

/** A byte range inside one block. */
export interface BlockRange {
  offsetBytes: number;
  lengthBytes: number;
}

/**
 * A local store of blocks. Implementations: `memory` (tests, simulation,
 * client caches) and `file` (durable, the default of torusd).
 *
 * Contract, checked by `_block_store_conformance.ts` for every implementation:
 * - Blocks are exactly `blockSizeBytes`; a shorter write is zero-padded.
 * - Every sector is checksummed. A read verifies each sector it touches and
 *   throws `BlockCorruptError` on a mismatch: never wrong bytes.
 * - After `flush()` resolves, every write and delete before it is durable (for
 *   durable stores). A block torn by a crash reads as `BlockCorruptError` or
 *   `BlockNotFoundError`, never as valid data.
 * - Buffers passed in are not retained; buffers returned are the caller's.
 * - A full store throws `OutOfSpaceError` and changes nothing.
 */
export interface BlockStore {
  /** The engine name: `memory` or `file`. */
  readonly kind: string;
  /** Size of every block. */
  readonly blockSizeBytes: number;
  /** Capacity, in blocks. */
  numBlocks(): number;
  /** Blocks in use: those stored, and any space the store keeps for them. */
  usedBlocks(): number;
  /**
   * Blocks stored as deltas that share sectors with another block's space,
   * for stores that make them (the file store); absent elsewhere.
   */
  deltaBlocks?(): number;
  /** Whether a block is stored. */
  hasBlock(ref: BlockRef): Promise<boolean>;
  /**
   * Reads a whole block, or `range` of it.
   *
   * @throws {BlockNotFoundError} when the block is not stored.
   * @throws {BlockCorruptError} when a touched sector fails its checksum.
   * @throws {RangeError} when `range` is outside the block.
   *
   * `expectDigest`, when given, is the digest (`core/sector.ts`) the caller
   * will check the returned sector CRCs against. A store holding several
   * copies (the distributor) uses it to skip stale or corrupt replicas and
   * return a matching one; a local store may ignore it, since the caller
   * checks anyway.
   *
   * `into`, when given, has exactly the range's length: a store may read the
   * bytes straight into it and return it as `data` (saving an allocation and
   * a copy on the hot path); callers copy when `data !== into`.
   */
  readBlock(
    ref: BlockRef,
    range?: BlockRange,
    expectDigest?: number,
    into?: Uint8Array,
  ): Promise<BlockRead>;
  /**
   * {@linkcode readBlock} of `range` into `into` (exactly the range's length)
   * without waiting, for stores that can serve some reads at once (the file
   * store, from the page cache): the same result, or null when the read
   * would have to wait (for the disk, for a write in flight) or cannot be
   * served this way (also a missing block: {@linkcode readBlock} then
   * throws). Absent where reads always wait (the distributor).
   *
   * @throws {BlockCorruptError} when a sector read fails its checksum.
   * @throws {RangeError} when `range` is outside the block.
   */
  readBlockNow?(ref: BlockRef, range: BlockRange, into: Uint8Array): BlockRead | null;
  /**
   * Stores a whole block, replacing any block with the same ref, and returns
   * its sector CRCs, so that the caller does not checksum the bytes a second
   * time. The block holds `data` at `offsetBytes` (default 0) and zeros
   * everywhere else: a first write of part of a sparse block passes just
   * that part, and the store, not the caller, supplies the zeros. The caller
   * must not change `data` before the returned promise settles.
   *
   * @throws {OutOfSpaceError} when no slot is free.
   * @throws {RangeError} when `data` at `offsetBytes` does not fit in a block.
   */
  writeBlock(ref: BlockRef, data: Uint8Array, offsetBytes?: number): Promise<Uint32Array>;
  /**
   * Overwrites `data.length` bytes of a stored block at `offsetBytes`, in place,
   * and returns the block's new sector CRCs. Only for blocks no committed INode
   * references yet: the file layer uses it to absorb small writes into a block
   * it already copied in the current write session.
   *
   * When `expectDigest` is given, the block's current sector CRCs must have
   * that digest (`core/sector.ts`), so a replaced block is never built upon.
   *
   * @throws {BlockNotFoundError} when the block is not stored.
   * @throws {BlockCorruptError} when an edge sector to merge with fails its
   * checksum, or the block does not match `expectDigest`.
   * @throws {OutOfSpaceError} when the store must move the block to hold the
   * change (the file store moves a block that copies borrow from, or a packed
   * copy that outgrows its record) and no slot is free; nothing changed.
   */
  writeBlockRange(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array>;
  /**
   * {@linkcode writeBlockRange} without waiting, for stores that can (the
   * file and memory stores): the same result, or null, with nothing changed,
   * when the write would have to wait for a write in flight or the block is
   * not stored ({@linkcode writeBlockRange} then says why).
   *
   * @throws the errors of {@linkcode writeBlockRange}, other than `BlockNotFoundError`.
   */
  writeBlockRangeNow?(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array | null;
  /**
   * Copy-on-write: stores `ref` as a copy of the stored block `source` with
   * `data` written at `offsetBytes` (`data` may be empty), and returns the new
   * block's sector CRCs. The file layer uses it for the first small write of a
   * session to a block a committed INode references; a local store copies
   * without bringing the block through JavaScript, others may use
   * {@linkcode copyBlockThrough}.
   *
   * When `expectDigest` is given, `source` must have that digest.
   *
   * @throws {BlockNotFoundError} when `source` is not stored.
   * @throws {BlockCorruptError} when `source` does not match `expectDigest`, or
   * an edge sector to merge with fails its checksum.
   * @throws {OutOfSpaceError} when no slot is free.
   * @throws {RangeError} when `source` and `ref` are the same block.
   */
  copyBlock(
    source: BlockRef,
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array>;
  /**
   * {@linkcode copyBlock} without waiting, as {@linkcode writeBlockRangeNow}
   * is to {@linkcode writeBlockRange}: null, with nothing changed, when
   * `source` is not stored or a write of `source` or `ref` is in flight.
   *
   * @throws the errors of {@linkcode copyBlock}, other than `BlockNotFoundError`.
   */
  copyBlockNow?(
    source: BlockRef,
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array | null;
  /** Deletes a block; returns whether it was stored. */
  deleteBlock(ref: BlockRef): Promise<boolean>;
  /** A snapshot of the refs stored now. */
  blockRefs(): BlockRef[];
  /** Makes every write and delete so far durable. */
  flush(): Promise<void>;
  /** Flushes and releases the store; later calls throw `ClosedError`. */
  close(): Promise<void>;
}

/**
 * Checks the arguments of {@linkcode BlockStore.writeBlock}: `lengthBytes` at
 * `offsetBytes` must fit in a block.
 *
 * @throws {RangeError} when they do not.
 */
export function checkWrite(
  ref: BlockRef,
  blockSizeBytes: number,
  offsetBytes: number,
  lengthBytes: number,
): void {
  if (
    !Number.isSafeInteger(offsetBytes) || offsetBytes < 0 ||
    offsetBytes + lengthBytes > blockSizeBytes
  ) {
    throw new RangeError(
      `Cannot write ${lengthBytes} bytes at ${offsetBytes} to ${ref}: a block has ${blockSizeBytes} bytes`,
    );
  }
}

/** Checks that `range` lies inside a block; returns it with defaults filled in. */
export function checkRange(blockSizeBytes: number, range?: BlockRange): BlockRange {
  const offsetBytes = range?.offsetBytes ?? 0;
  const lengthBytes = range?.lengthBytes ?? blockSizeBytes - offsetBytes;
  if (
    !Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 ||
    lengthBytes < 0 || offsetBytes + lengthBytes > blockSizeBytes
  ) {
    throw new RangeError(
      `Cannot access bytes [${offsetBytes}, ${
        offsetBytes + lengthBytes
      }) of a block: the block has ${blockSizeBytes} bytes`,
    );
  }
  return { offsetBytes, lengthBytes };
}

/**
 * {@linkcode BlockStore.copyBlock} by reading the whole source block and
 * writing the copy: for stores that cannot copy in place (the distributor,
 * whose copies live on other peers).
 */
export async function copyBlockThrough(
  store: BlockStore,
  source: BlockRef,
  ref: BlockRef,
  offsetBytes: number,
  data: Uint8Array,
  expectDigest?: number,
): Promise<Uint32Array> {
  checkRange(store.blockSizeBytes, { offsetBytes, lengthBytes: data.length });
  if (source.equals(ref)) throw new RangeError(`Cannot copy ${ref} onto itself`);
  const old = await store.readBlock(source, undefined, expectDigest);
  if (expectDigest !== undefined && blockDigest(old.sectorCrcs) !== expectDigest) {
    throw new BlockCorruptError(`Cannot copy ${source}: it does not match the expected digest`);
  }
  const block = old.data;
  block.set(data, offsetBytes);
  return await store.writeBlock(ref, block);
}
