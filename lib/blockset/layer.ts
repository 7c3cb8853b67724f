/**
 * The contract between blockset layers. A blockset maps block indices of a
 * file to stored blocks through a stack of layers, outermost first: `crc`
 * checks digests, `rep=N` keeps extra copies, `base` holds the refs.
 *
 * @module
 */
import { BlockRef, BlockType, type INodeRef } from "../core/block_ref.ts";
import type { BlockRange, BlockRead, BlockStore } from "../storage/block_store.ts";

/** Layer kinds, with the original's wire numbers. */
export const LayerKind = { base: 0, crc: 1, rep: 2 } as const;
/** A {@linkcode LayerKind} value. */
export type LayerKind = typeof LayerKind[keyof typeof LayerKind];

/** One layer's marshalled state (a `models.BlockLayer`). */
export interface MarshalledLayer {
  type: LayerKind;
  content: Uint8Array;
}

/**
 * Hands out fresh block refs for the current write session: every block
 * written under INode n of a volume is (volume, n, 1), (volume, n, 2), …
 */
export class RefAllocator {
  #session: INodeRef | null = null;
  #lastIndex = 0;

  /** Starts a session: refs are taken from `inode` from now on. */
  begin(inode: INodeRef): void {
    this.#session = inode;
    this.#lastIndex = 0;
  }

  /** Ends the session: every block written so far is now immutable. */
  end(): void {
    this.#session = null;
    this.#lastIndex = 0;
  }

  /** The open session, or null between sessions. */
  get session(): INodeRef | null {
    return this.#session;
  }

  /** Whether `ref` was written in the open session (so it may change in place). */
  ownsRef(ref: BlockRef): boolean {
    const session = this.#session;
    return session !== null && !ref.isZero() && ref.volume === session.volume &&
      ref.inode === session.inode;
  }

  /** The ref {@linkcode RefAllocator.next} will hand out, without taking it. */
  peekNext(): BlockRef {
    const session = this.#session;
    if (session === null) {
      throw new TypeError("Cannot allocate a block ref: no write session is open");
    }
    return new BlockRef(session.volume, BlockType.data, session.inode, this.#lastIndex + 1);
  }

  /** A new data block ref in the open session. */
  next(): BlockRef {
    const session = this.#session;
    if (session === null) {
      throw new TypeError("Cannot allocate a block ref: no write session is open");
    }
    this.#lastIndex++;
    return new BlockRef(session.volume, BlockType.data, session.inode, this.#lastIndex);
  }

  /** The next index to hand out (for tests and for the INode's highwater). */
  get lastIndex(): number {
    return this.#lastIndex;
  }
}

/** Shared context of the layers of one blockset. */
export interface LayerContext {
  store: BlockStore;
  blockSizeBytes: number;
  refs: RefAllocator;
}

/**
 * One layer. Indices are block indices in the file. `write` and
 * `writeRange` may only be called with an open session in the context's
 * {@linkcode RefAllocator}.
 */
export interface Layer {
  readonly kind: LayerKind;
  /** Blocks in the file. */
  length(): number;
  /** Whether block `index` is sparse: never written, or trimmed (it reads as zeros). */
  isSparse(index: number): boolean;
  /**
   * Reads block `index`, or a range of it. A sparse block reads as zeros.
   * When `expectDigest` is given, a layer with alternatives (replicas) returns
   * only a candidate whose sector CRCs have that digest.
   *
   * `into` (the range's length) is passed down to the store, which may fill
   * it and return it as `data`.
   *
   * @throws {BlockNotFoundError} when `index >= length()`.
   */
  read(
    index: number,
    range: BlockRange,
    expectDigest?: number,
    into?: Uint8Array,
  ): Promise<BlockRead>;
  /**
   * {@linkcode Layer.read} of `range` into `into` (exactly the range's
   * length) without waiting: the same result, or null when the read would
   * wait (the store's `readBlockNow` said so) or this layer cannot answer
   * at once; the caller then calls `read()`. Absent on layers that never can.
   *
   * @throws {BlockNotFoundError} when `index >= length()`.
   * @throws {BlockCorruptError} as `read()` does.
   */
  readNow?(index: number, range: BlockRange, into: Uint8Array): BlockRead | null;
  /** Writes a whole block at `index` (`index === length()` appends); returns its sector CRCs. */
  write(index: number, data: Uint8Array): Promise<Uint32Array>;
  /**
   * Writes part of block `index`: in place when the block was written in the
   * open session, copy-on-write otherwise. Returns the block's sector CRCs.
   * A copy-on-write checks the old block against `expectDigest` when given.
   *
   * @throws {BlockCorruptError} when the old block fails its checks.
   */
  writeRange(
    index: number,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array>;
  /**
   * {@linkcode Layer.writeRange} without waiting: the block's new sector
   * CRCs, or null, with nothing changed, when the write would wait (the
   * store's `writeBlockRangeNow`/`copyBlockNow` said so) or this layer
   * cannot do it at once (a sparse block, replicas). Absent on layers that
   * never can.
   *
   * @throws the errors of `writeRange()`.
   */
  writeRangeNow?(
    index: number,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array | null;
  /** Sets the length to `lengthBlocks`, extending with sparse blocks. */
  truncate(lengthBlocks: number): void;
  /** Makes blocks [fromIndex, toIndex) sparse. */
  trim(fromIndex: number, toIndex: number): void;
  /** Every non-zero ref this layer and those below reference. */
  blockRefs(): BlockRef[];
  /** Marshals this layer and those below, outermost first. */
  marshal(): MarshalledLayer[];
}
