/**
 * Storage of INodes as blocks. An INode (a `models.INode`) is serialized and
 * written as blocks of type INode at (volume, inode, 1..n): block 1 starts
 * with the u32 LE length of the serialized INode, and the bytes continue
 * across the following blocks, zero-padded, as in the original.
 *
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BlockType, INodeRef } from "../core/block_ref.ts";

import { type INode, INodeSchema } from "../models/torus_pb.ts";
import type { MarshalledLayer } from "../blockset/layer.ts";
import { LayerKind } from "../blockset/layer.ts";
import type { BlockStore } from "../storage/block_store.ts";

/** Length prefix of the first INode block. */
const LENGTH_PREFIX_BYTES = 4;
/** Largest serialized INode: 1 GiB would be 2^31 blocks; refuse anything near that. */
export const INODE_SIZE_BYTES_MAX = 512 * 1024 * 1024;

/** One version of a file, as Torus uses it. */
export interface INodeRecord {
  ref: INodeRef;
  /** The INode number this one replaced (0 for the first). */
  replaces: number;
  /** Logical size of the file, in bytes. */
  sizeBytes: number;
  /** Blockset layers, outermost first. */
  layers: MarshalledLayer[];
}

/** Encodes an INode record as `models.INode` bytes. */
export function encodeINode(record: INodeRecord): Uint8Array {
  return toBinary(
    INodeSchema,
    create(INodeSchema, {
      volume: BigInt(record.ref.volume),
      inode: BigInt(record.ref.inode),
      replaces: BigInt(record.replaces),
      filesize: BigInt(record.sizeBytes),
      blocks: record.layers.map((layer) => ({ type: layer.type, content: layer.content })),
    }),
  );
}

/**
 * Decodes `models.INode` bytes.
 *
 * @throws {SyntaxError} on malformed bytes or out-of-range numbers.
 */
export function decodeINode(bytes: Uint8Array): INodeRecord {
  let inode: INode;
  try {
    inode = fromBinary(INodeSchema, bytes);
  } catch (error) {
    throw new SyntaxError(`Cannot decode INode: ${(error as Error).message}`, { cause: error });
  }
  const number = (value: bigint, name: string) => {
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new SyntaxError(`Cannot decode INode: ${name} ${value} is out of range`);
    }
    return Number(value);
  };
  const layers = inode.blocks.map((layer) => {
    if (!Object.values(LayerKind).includes(layer.type as LayerKind)) {
      throw new SyntaxError(`Cannot decode INode: unknown layer type ${layer.type}`);
    }
    return { type: layer.type as LayerKind, content: layer.content };
  });
  return {
    ref: new INodeRef(number(inode.volume, "volume"), number(inode.inode, "inode")),
    replaces: number(inode.replaces, "replaces"),
    sizeBytes: number(inode.filesize, "filesize"),
    layers,
  };
}

/** Bytes {@linkcode INodeStore.writeINode} stores for `record`, its length prefix included. */
export function inodeStoredBytes(record: INodeRecord): number {
  return LENGTH_PREFIX_BYTES + encodeINode(record).length;
}

/** Reads and writes INodes in a BlockStore. */
export class INodeStore {
  #store: BlockStore;

  constructor(store: BlockStore) {
    this.#store = store;
  }

  /** Writes `record` at its ref. Not durable until the store is flushed. */
  async writeINode(record: INodeRecord): Promise<void> {
    const body = encodeINode(record);
    const blockSize = this.#store.blockSizeBytes;
    const total = new Uint8Array(LENGTH_PREFIX_BYTES + body.length);
    new DataView(total.buffer).setUint32(0, body.length, true);
    total.set(body, LENGTH_PREFIX_BYTES);
    const count = Math.ceil(total.length / blockSize);
    for (let i = 0; i < count; i++) {
      await this.#store.writeBlock(
        record.ref.blockRef(BlockType.inode, i + 1),
        total.subarray(i * blockSize, (i + 1) * blockSize),
      );
    }
  }

  /**
   * Reads the INode at `ref`.
   *
   * @throws {BlockNotFoundError} when it is not stored.
   * @throws {BlockCorruptError} when a block fails its checksum.
   * @throws {SyntaxError} when its bytes do not decode.
   */
  async getINode(ref: INodeRef): Promise<INodeRecord> {
    const blockSize = this.#store.blockSizeBytes;
    const first = (await this.#store.readBlock(ref.blockRef(BlockType.inode, 1))).data;
    const length = new DataView(first.buffer, first.byteOffset).getUint32(0, true);
    if (length > INODE_SIZE_BYTES_MAX) {
      throw new SyntaxError(`Cannot decode INode ${ref}: length ${length} is too large`);
    }
    const total = new Uint8Array(LENGTH_PREFIX_BYTES + length);
    total.set(first.subarray(0, Math.min(blockSize, total.length)));
    const count = Math.ceil(total.length / blockSize);
    for (let i = 1; i < count; i++) {
      const block = (await this.#store.readBlock(ref.blockRef(BlockType.inode, i + 1))).data;
      total.set(
        block.subarray(0, Math.min(blockSize, total.length - i * blockSize)),
        i * blockSize,
      );
    }
    const record = decodeINode(total.subarray(LENGTH_PREFIX_BYTES));
    if (!record.ref.equals(ref)) {
      throw new SyntaxError(`Cannot read INode ${ref}: the stored INode says ${record.ref}`);
    }
    return record;
  }

  /** Deletes the blocks of the INode at `ref`; returns how many were deleted. */
  async deleteINode(ref: INodeRef): Promise<number> {
    let deleted = 0;
    for (let index = 1;; index++) {
      if (!(await this.#store.deleteBlock(ref.blockRef(BlockType.inode, index)))) break;
      deleted++;
    }
    return deleted;
  }
}
