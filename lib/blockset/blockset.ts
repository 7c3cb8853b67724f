/**
 * A {@linkcode Blockset}: the layer stack of one file version, built from a
 * spec or from the layers of a stored INode.
 *
 * @module
 */
import type { BlockRef, INodeRef } from "../core/block_ref.ts";
import type { BlockRange, BlockStore } from "../storage/block_store.ts";
import { BaseLayer } from "./base_layer.ts";
import { CrcLayer } from "./crc_layer.ts";
import {
  type Layer,
  type LayerContext,
  LayerKind,
  type MarshalledLayer,
  RefAllocator,
} from "./layer.ts";
import { RepLayer } from "./rep_layer.ts";
import type { LayerSpec } from "./spec.ts";

/**
 * The blocks of a file, through its layers.
 *
 * @example Usage
 * ```ts
 * import { Blockset } from "./blockset.ts";
 * import { parseBlockSpec } from "./spec.ts";
 * import { MemoryBlockStore } from "../storage/memory_block_store.ts";
 * import { INodeRef } from "../core/block_ref.ts";
 * const store = new MemoryBlockStore({ blockSizeBytes: 4096, numBlocks: 16 });
 * const blocks = Blockset.fromSpec(parseBlockSpec("crc,base"), store);
 * blocks.beginSession(new INodeRef(1, 2));
 * await blocks.write(0, new TextEncoder().encode("hello"));
 * const data = await blocks.read(0, { offsetBytes: 0, lengthBytes: 5 });
 * if (new TextDecoder().decode(data) !== "hello") throw new Error("wrong bytes");
 * ```
 */
export class Blockset {
  #context: LayerContext;
  #top: Layer;

  private constructor(context: LayerContext, top: Layer) {
    this.#context = context;
    this.#top = top;
  }

  /** An empty blockset with the layers of `spec`. */
  static fromSpec(spec: LayerSpec[], store: BlockStore): Blockset {
    const context = newContext(store);
    let layer: Layer | undefined;
    for (let i = spec.length - 1; i >= 0; i--) {
      const item = spec[i]!;
      switch (item.kind) {
        case LayerKind.base:
          layer = new BaseLayer(context);
          break;
        case LayerKind.crc:
          layer = new CrcLayer(context, layer!);
          break;
        case LayerKind.rep:
          layer = new RepLayer(context, layer!, item.replication ?? 2);
          break;
      }
    }
    if (layer === undefined || spec.at(-1)?.kind !== LayerKind.base) {
      throw new SyntaxError("Cannot build a blockset: the spec must end with base");
    }
    return new Blockset(context, layer);
  }

  /**
   * Rebuilds a blockset from marshalled layers, outermost first.
   *
   * @throws {SyntaxError} on malformed layers.
   */
  static unmarshal(layers: MarshalledLayer[], store: BlockStore): Blockset {
    const context = newContext(store);
    let layer: Layer | undefined;
    for (let i = layers.length - 1; i >= 0; i--) {
      const { type, content } = layers[i]!;
      if ((type === LayerKind.base) !== (i === layers.length - 1)) {
        throw new SyntaxError("Cannot decode blockset: base must be the innermost layer, once");
      }
      switch (type) {
        case LayerKind.base:
          layer = BaseLayer.unmarshal(context, content);
          break;
        case LayerKind.crc:
          layer = CrcLayer.unmarshal(context, layer!, content);
          break;
        case LayerKind.rep:
          layer = RepLayer.unmarshal(context, layer!, content);
          break;
        default:
          throw new SyntaxError(`Cannot decode blockset: unknown layer type ${type}`);
      }
    }
    if (layer === undefined) throw new SyntaxError("Cannot decode blockset: it has no layers");
    return new Blockset(context, layer);
  }

  /** Size of every block. */
  get blockSizeBytes(): number {
    return this.#context.blockSizeBytes;
  }

  /** Blocks in the set. */
  length(): number {
    return this.#top.length();
  }

  /** Whether block `index` is sparse: never written, or trimmed (it reads as zeros). */
  isSparse(index: number): boolean {
    return this.#top.isSparse(index);
  }

  /** Opens a write session: new blocks get refs under `inode`. */
  beginSession(inode: INodeRef): void {
    this.#context.refs.begin(inode);
  }

  /** Ends the write session (after its INode is committed). */
  endSession(): void {
    this.#context.refs.end();
  }

  /** The open write session's INode, or null. */
  get session(): INodeRef | null {
    return this.#context.refs.session;
  }

  /**
   * Reads `range` of block `index`. With `into` (the range's length), the
   * bytes land in it, and it is returned.
   */
  async read(index: number, range: BlockRange, into?: Uint8Array): Promise<Uint8Array> {
    const { data } = await this.#top.read(index, range, undefined, into);
    if (into === undefined || data === into) return data;
    into.set(data);
    return into;
  }

  /**
   * {@linkcode Blockset.read} into `into` without waiting: true when `into`
   * now holds the bytes, false when the read would wait (call `read()`).
   *
   * @throws {BlockCorruptError} when the block fails its checks.
   */
  readNow(index: number, range: BlockRange, into: Uint8Array): boolean {
    const result = this.#top.readNow?.(index, range, into) ?? null;
    if (result === null) return false;
    if (result.data !== into) into.set(result.data);
    return true;
  }

  /** Writes a whole block. */
  async write(index: number, data: Uint8Array): Promise<void> {
    await this.#top.write(index, data);
  }

  /** Writes part of a block (in place within a session, copy-on-write otherwise). */
  async writeRange(index: number, offsetBytes: number, data: Uint8Array): Promise<void> {
    await this.#top.writeRange(index, offsetBytes, data);
  }

  /**
   * {@linkcode Blockset.writeRange} without waiting: true when written, false
   * (nothing changed) when the write would wait (call `writeRange()`).
   */
  writeRangeNow(index: number, offsetBytes: number, data: Uint8Array): boolean {
    return (this.#top.writeRangeNow?.(index, offsetBytes, data) ?? null) !== null;
  }

  /** Sets the length in blocks. */
  truncate(lengthBlocks: number): void {
    this.#top.truncate(lengthBlocks);
  }

  /** Makes blocks [fromIndex, toIndex) sparse. */
  trim(fromIndex: number, toIndex: number): void {
    this.#top.trim(fromIndex, toIndex);
  }

  /** Every block ref referenced (for GC). */
  blockRefs(): BlockRef[] {
    return this.#top.blockRefs();
  }

  /** The layers, outermost first. */
  marshal(): MarshalledLayer[] {
    return this.#top.marshal();
  }
}

function newContext(store: BlockStore): LayerContext {
  return { store, blockSizeBytes: store.blockSizeBytes, refs: new RefAllocator() };
}
