/**
 * The in-memory BlockStore, for tests, simulation and client-side caches.
 * Never what a user's data lives in.
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";
import { crc32 } from "../core/crc32.ts";
import { blockDigest, sectorCrcs, sectorSizeBytes } from "../core/sector.ts";
import { BlockCorruptError, BlockNotFoundError, ClosedError, OutOfSpaceError } from "../errors.ts";
import {
  type BlockRange,
  type BlockRead,
  type BlockStore,
  checkRange,
  checkWrite,
} from "./block_store.ts";

interface Stored {
  ref: BlockRef;
  data: Uint8Array;
  crcs: Uint32Array;
}

/** Options of {@linkcode MemoryBlockStore}. */
export interface MemoryBlockStoreOptions {
  blockSizeBytes: number;
  /** Capacity in blocks. */
  numBlocks: number;
}

/**
 * A BlockStore in a Map.
 *
 * @example Usage
 * ```ts
 * import { MemoryBlockStore } from "./memory_block_store.ts";
 * import { BlockRef, BlockType } from "../core/block_ref.ts";
 * const store = new MemoryBlockStore({ blockSizeBytes: 4096, numBlocks: 8 });
 * const ref = new BlockRef(1, BlockType.data, 1, 1);
 * await store.writeBlock(ref, new Uint8Array([1, 2, 3]));
 * const { data } = await store.readBlock(ref, { offsetBytes: 1, lengthBytes: 2 });
 * if (data[0] !== 2 || data[1] !== 3) throw new Error("wrong bytes");
 * ```
 */
export class MemoryBlockStore implements BlockStore {
  readonly kind = "memory";
  readonly blockSizeBytes: number;
  #numBlocks: number;
  #blocks = new Map<string, Stored>();
  #closed = false;

  constructor(options: MemoryBlockStoreOptions) {
    this.blockSizeBytes = options.blockSizeBytes;
    this.#numBlocks = options.numBlocks;
  }

  numBlocks(): number {
    return this.#numBlocks;
  }
  usedBlocks(): number {
    return this.#blocks.size;
  }
  async hasBlock(ref: BlockRef): Promise<boolean> {
    this.#checkOpen();
    return this.#blocks.has(ref.key());
  }

  async readBlock(ref: BlockRef, range?: BlockRange): Promise<BlockRead> {
    this.#checkOpen();
    const { offsetBytes, lengthBytes } = checkRange(this.blockSizeBytes, range);
    const stored = this.#get(ref);
    this.#verify(stored, offsetBytes, lengthBytes);
    return {
      data: stored.data.slice(offsetBytes, offsetBytes + lengthBytes),
      sectorCrcs: stored.crcs.slice(),
    };
  }

  readBlockNow(ref: BlockRef, range: BlockRange, into: Uint8Array): BlockRead | null {
    if (this.#closed) return null;
    const { offsetBytes, lengthBytes } = checkRange(this.blockSizeBytes, range);
    const stored = this.#blocks.get(ref.key());
    if (stored === undefined || into.length !== lengthBytes) return null;
    this.#verify(stored, offsetBytes, lengthBytes);
    into.set(stored.data.subarray(offsetBytes, offsetBytes + lengthBytes));
    return { data: into, sectorCrcs: stored.crcs.slice() };
  }

  async writeBlock(ref: BlockRef, data: Uint8Array, offsetBytes = 0): Promise<Uint32Array> {
    this.#checkOpen();
    checkWrite(ref, this.blockSizeBytes, offsetBytes, data.length);
    const key = ref.key();
    if (!this.#blocks.has(key) && this.#blocks.size >= this.#numBlocks) {
      throw new OutOfSpaceError(`Cannot write ${ref}: all ${this.#numBlocks} blocks are in use`);
    }
    const copy = new Uint8Array(this.blockSizeBytes);
    copy.set(data, offsetBytes);
    const crcs = sectorCrcs(copy, this.blockSizeBytes);
    this.#blocks.set(key, { ref, data: copy, crcs });
    return crcs.slice();
  }

  async writeBlockRange(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    this.#checkOpen();
    return this.#writeRange(ref, offsetBytes, data, expectDigest);
  }

  writeBlockRangeNow(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array | null {
    if (this.#closed || !this.#blocks.has(ref.key())) return null;
    return this.#writeRange(ref, offsetBytes, data, expectDigest);
  }

  #writeRange(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array {
    checkRange(this.blockSizeBytes, { offsetBytes, lengthBytes: data.length });
    const stored = this.#get(ref);
    if (expectDigest !== undefined && blockDigest(stored.crcs) !== expectDigest) {
      throw new BlockCorruptError(`Cannot write to ${ref}: it does not match the expected digest`);
    }
    this.#patch(stored, offsetBytes, data);
    return stored.crcs.slice();
  }

  async copyBlock(
    source: BlockRef,
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    this.#checkOpen();
    return this.#copy(source, ref, offsetBytes, data, expectDigest);
  }

  copyBlockNow(
    source: BlockRef,
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array | null {
    if (this.#closed || !this.#blocks.has(source.key())) return null;
    return this.#copy(source, ref, offsetBytes, data, expectDigest);
  }

  #copy(
    source: BlockRef,
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array {
    checkRange(this.blockSizeBytes, { offsetBytes, lengthBytes: data.length });
    if (source.equals(ref)) throw new RangeError(`Cannot copy ${ref} onto itself`);
    const from = this.#get(source);
    if (expectDigest !== undefined && blockDigest(from.crcs) !== expectDigest) {
      throw new BlockCorruptError(`Cannot copy ${source}: it does not match the expected digest`);
    }
    const key = ref.key();
    if (!this.#blocks.has(key) && this.#blocks.size >= this.#numBlocks) {
      throw new OutOfSpaceError(`Cannot write ${ref}: all ${this.#numBlocks} blocks are in use`);
    }
    // Corrupt sectors are copied with their CRCs, so they stay detectable.
    // Patched under the source's name: an edge sector that fails is the source's.
    const copy: Stored = { ref: source, data: from.data.slice(), crcs: from.crcs.slice() };
    this.#patch(copy, offsetBytes, data);
    copy.ref = ref;
    this.#blocks.set(key, copy);
    return copy.crcs.slice();
  }

  async deleteBlock(ref: BlockRef): Promise<boolean> {
    this.#checkOpen();
    return this.#blocks.delete(ref.key());
  }

  blockRefs(): BlockRef[] {
    this.#checkOpen();
    return [...this.#blocks.values()].map((stored) => stored.ref);
  }

  async flush(): Promise<void> {
    this.#checkOpen();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#blocks.clear();
  }

  /** Test hook: flips one byte of a stored block without updating its checksum. */
  corruptForTest(ref: BlockRef, offsetBytes: number): void {
    const stored = this.#get(ref);
    stored.data[offsetBytes] = stored.data[offsetBytes]! ^ 0xff;
  }

  /**
   * Writes `data` at `offsetBytes` of `stored` and recomputes the touched
   * sectors' CRCs. Merges only with edge sectors that verify: never launders
   * a corrupt sector.
   */
  #patch(stored: Stored, offsetBytes: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const sector = sectorSizeBytes(this.blockSizeBytes);
    const first = Math.floor(offsetBytes / sector);
    const end = Math.ceil((offsetBytes + data.length) / sector);
    this.#verify(stored, first * sector, sector);
    this.#verify(stored, (end - 1) * sector, sector);
    stored.data.set(data, offsetBytes);
    for (let i = first; i < end; i++) {
      stored.crcs[i] = crc32(stored.data.subarray(i * sector, (i + 1) * sector));
    }
  }

  #get(ref: BlockRef): Stored {
    const stored = this.#blocks.get(ref.key());
    if (!stored) throw new BlockNotFoundError(`Cannot read ${ref}: block is not stored`);
    return stored;
  }

  #verify(stored: Stored, offsetBytes: number, lengthBytes: number): void {
    const sector = sectorSizeBytes(this.blockSizeBytes);
    const first = Math.floor(offsetBytes / sector);
    const end = Math.max(first + 1, Math.ceil((offsetBytes + lengthBytes) / sector));
    for (let i = first; i < end && i < stored.crcs.length; i++) {
      if (crc32(stored.data.subarray(i * sector, (i + 1) * sector)) !== stored.crcs[i]) {
        throw new BlockCorruptError(`Cannot read ${stored.ref}: sector ${i} fails its checksum`);
      }
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError("Cannot use the memory block store: it is closed");
  }
}
