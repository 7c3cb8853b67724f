/**
 * Block and INode addresses, with byte encodings exactly as in the original
 * Torus (all little-endian):
 *
 * ```
 * BlockRef, 24 bytes: [0..8)  volume word = volume id (bits 0..39) | type << 40
 *                     [8..16) INode number   [16..24) index
 * INodeRef, 16 bytes: [0..8)  volume word    [8..16) INode number
 * ```
 *
 * Ids are JS numbers, asserted to be safe integers: a volume id has 40 bits,
 * and INode and index counters grow by one per sync or per block, so 2^53 is
 * out of reach.
 *
 * @module
 */
import { assert } from "../assert.ts";
import { VOLUME_ID_MAX } from "../constants.ts";

/** Size of an encoded {@linkcode BlockRef}. */
export const BLOCK_REF_SIZE_BYTES = 24;
/** Size of an encoded {@linkcode INodeRef}. */
export const INODE_REF_SIZE_BYTES = 16;

/** What a block holds: file data, or a piece of a serialized INode. */
export const BlockType = { data: 0, inode: 1 } as const;
/** A {@linkcode BlockType} value. */
export type BlockType = typeof BlockType[keyof typeof BlockType];

const TWO_32 = 0x1_0000_0000;

/** Writes `value` (a safe non-negative integer) as u64 LE at `offset`. */
export function writeU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % TWO_32, true);
  view.setUint32(offset + 4, Math.floor(value / TWO_32), true);
}

/** Reads a u64 LE at `offset`; throws `RangeError` beyond 2^53 - 1. */
export function readU64(view: DataView, offset: number): number {
  const value = view.getUint32(offset + 4, true) * TWO_32 + view.getUint32(offset, true);
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`Cannot read u64 at offset ${offset}: value exceeds 2^53 - 1`);
  }
  return value;
}

function checkId(name: string, value: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new RangeError(`Cannot use ${name} ${value}: expected an integer in [0, ${max}]`);
  }
}

/**
 * The address of one immutable block: volume, type, INode and index.
 *
 * @example Usage
 * ```ts
 * import { BlockRef, BlockType } from "./block_ref.ts";
 * const ref = new BlockRef(2, BlockType.data, 5, 1);
 * const back = BlockRef.fromBytes(ref.toBytes());
 * if (!back.equals(ref)) throw new Error("round trip failed");
 * ```
 */
export class BlockRef {
  readonly volume: number;
  readonly type: BlockType;
  readonly inode: number;
  readonly index: number;
  #key: string | undefined;

  constructor(volume: number, type: BlockType, inode: number, index: number) {
    checkId("volume id", volume, VOLUME_ID_MAX);
    checkId("INode", inode);
    checkId("index", index);
    assert(type === BlockType.data || type === BlockType.inode, `bad block type ${type}`);
    this.volume = volume;
    this.type = type;
    this.inode = inode;
    this.index = index;
  }

  /** The all-zero ref: a sparse (zero) block in a blockset. Type is ignored, as in the original. */
  static readonly ZERO: BlockRef = new BlockRef(0, BlockType.data, 0, 0);

  /** True for the zero ref (volume, INode and index all zero). */
  isZero(): boolean {
    return this.volume === 0 && this.inode === 0 && this.index === 0;
  }

  equals(other: BlockRef): boolean {
    return this.volume === other.volume && this.type === other.type &&
      this.inode === other.inode && this.index === other.index;
  }

  /** A string that identifies the ref, for map keys (built once: every block I/O looks it up). */
  key(): string {
    return this.#key ??= `${this.volume}.${this.type}.${this.inode}.${this.index}`;
  }

  /** The INode this block belongs to. */
  inodeRef(): INodeRef {
    return new INodeRef(this.volume, this.inode);
  }

  /** Encodes into `target` at `offset` (24 bytes). */
  writeTo(target: Uint8Array, offset = 0): void {
    const view = new DataView(target.buffer, target.byteOffset + offset, BLOCK_REF_SIZE_BYTES);
    view.setUint32(0, this.volume % TWO_32, true);
    view.setUint32(4, Math.floor(this.volume / TWO_32) | (this.type << 8), true);
    writeU64(view, 8, this.inode);
    writeU64(view, 16, this.index);
  }

  /** The 24-byte encoding. */
  toBytes(): Uint8Array {
    const bytes = new Uint8Array(BLOCK_REF_SIZE_BYTES);
    this.writeTo(bytes);
    return bytes;
  }

  /**
   * Decodes 24 bytes at `offset`.
   *
   * @throws {SyntaxError} on an unknown block type or a short buffer.
   */
  static fromBytes(source: Uint8Array, offset = 0): BlockRef {
    if (source.length - offset < BLOCK_REF_SIZE_BYTES) {
      throw new SyntaxError(
        `Cannot decode block ref: need 24 bytes, have ${source.length - offset}`,
      );
    }
    const view = new DataView(source.buffer, source.byteOffset + offset, BLOCK_REF_SIZE_BYTES);
    const high = view.getUint32(4, true);
    const volume = (high & 0xff) * TWO_32 + view.getUint32(0, true);
    const type = high >>> 8;
    if (type !== BlockType.data && type !== BlockType.inode) {
      throw new SyntaxError(`Cannot decode block ref: unknown block type ${type}`);
    }
    return new BlockRef(volume, type, readU64(view, 8), readU64(view, 16));
  }

  toString(): string {
    return `br ${this.volume.toString(16)}:${this.type}:${this.inode.toString(16)}:${
      this.index.toString(16)
    }`;
  }
}

/**
 * The address of one version of a file: volume and INode number.
 *
 * @example Usage
 * ```ts
 * import { INodeRef } from "./block_ref.ts";
 * const ref = new INodeRef(2, 7);
 * if (!INodeRef.fromBytes(ref.toBytes()).equals(ref)) throw new Error("round trip failed");
 * ```
 */
export class INodeRef {
  readonly volume: number;
  readonly inode: number;

  constructor(volume: number, inode: number) {
    checkId("volume id", volume, VOLUME_ID_MAX);
    checkId("INode", inode);
    this.volume = volume;
    this.inode = inode;
  }

  equals(other: INodeRef): boolean {
    return this.volume === other.volume && this.inode === other.inode;
  }

  /** The 16-byte encoding (volume word without type bits, then INode). */
  toBytes(): Uint8Array {
    const bytes = new Uint8Array(INODE_REF_SIZE_BYTES);
    const view = new DataView(bytes.buffer);
    writeU64(view, 0, this.volume);
    writeU64(view, 8, this.inode);
    return bytes;
  }

  /**
   * Decodes 16 bytes.
   *
   * @throws {SyntaxError} on a short buffer or a volume id over 40 bits.
   */
  static fromBytes(source: Uint8Array): INodeRef {
    if (source.length < INODE_REF_SIZE_BYTES) {
      throw new SyntaxError(`Cannot decode INode ref: need 16 bytes, have ${source.length}`);
    }
    const view = new DataView(source.buffer, source.byteOffset, INODE_REF_SIZE_BYTES);
    const volumeWord = readU64(view, 0);
    if (volumeWord > VOLUME_ID_MAX) {
      throw new SyntaxError(`Cannot decode INode ref: volume word ${volumeWord} has type bits`);
    }
    return new INodeRef(volumeWord, readU64(view, 8));
  }

  /** The ref of block `index` of this INode's serialized form. */
  blockRef(type: BlockType, index: number): BlockRef {
    return new BlockRef(this.volume, type, this.inode, index);
  }

  toString(): string {
    return `vol: ${this.volume}, inode: ${this.inode}`;
  }
}
