/**
 * The `base` layer: the list of block refs of a file. A zero ref is a sparse
 * block that reads as zeros and occupies nothing.
 *
 * Marshalled as `length × 24-byte refs`, as in the original.
 *
 * @module
 */
import { BLOCK_REF_SIZE_BYTES, BlockRef } from "../core/block_ref.ts";
import { zeroSectorCrcs } from "../core/sector.ts";
import { BlockNotFoundError } from "../errors.ts";
import type { BlockRange, BlockRead } from "../storage/block_store.ts";
import { type Layer, type LayerContext, LayerKind, type MarshalledLayer } from "./layer.ts";

/** The innermost layer. */
export class BaseLayer implements Layer {
  readonly kind = LayerKind.base;
  #context: LayerContext;
  #refs: BlockRef[];

  constructor(context: LayerContext, refs: BlockRef[] = []) {
    this.#context = context;
    this.#refs = refs;
  }

  /** Unmarshals `content` (length × 24-byte refs). @throws {SyntaxError} */
  static unmarshal(context: LayerContext, content: Uint8Array): BaseLayer {
    if (content.length % BLOCK_REF_SIZE_BYTES !== 0) {
      throw new SyntaxError(`Cannot decode base layer: ${content.length} bytes is not whole refs`);
    }
    const refs: BlockRef[] = [];
    for (let offset = 0; offset < content.length; offset += BLOCK_REF_SIZE_BYTES) {
      refs.push(BlockRef.fromBytes(content, offset));
    }
    return new BaseLayer(context, refs);
  }

  length(): number {
    return this.#refs.length;
  }

  isSparse(index: number): boolean {
    return this.refAt(index).isZero();
  }

  /** The ref at `index` (zero for a sparse block). */
  refAt(index: number): BlockRef {
    const ref = this.#refs[index];
    if (ref === undefined) {
      throw new BlockNotFoundError(`Cannot find block ${index}: the file has ${this.#refs.length}`);
    }
    return ref;
  }

  async read(
    index: number,
    range: BlockRange,
    expectDigest?: number,
    into?: Uint8Array,
  ): Promise<BlockRead> {
    const ref = this.refAt(index);
    if (ref.isZero()) {
      return {
        data: into?.fill(0) ?? new Uint8Array(range.lengthBytes),
        sectorCrcs: zeroSectorCrcs(this.#context.blockSizeBytes),
      };
    }
    return await this.#context.store.readBlock(ref, range, expectDigest, into);
  }

  readNow(index: number, range: BlockRange, into: Uint8Array): BlockRead | null {
    const ref = this.refAt(index);
    if (ref.isZero()) {
      return { data: into.fill(0), sectorCrcs: zeroSectorCrcs(this.#context.blockSizeBytes) };
    }
    return this.#context.store.readBlockNow?.(ref, range, into) ?? null;
  }

  async write(index: number, data: Uint8Array): Promise<Uint32Array> {
    this.#checkWritable(index);
    return await this.#writeWhole(index, data, 0);
  }

  async writeRange(
    index: number,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    this.#checkWritable(index);
    const current = this.#refs[index];
    if (current !== undefined && this.#context.refs.ownsRef(current)) {
      return await this.#context.store.writeBlockRange(current, offsetBytes, data, expectDigest);
    }
    // Copy-on-write: the current block belongs to a committed INode.
    if (current === undefined || current.isZero()) {
      // The store supplies the zeros: no block-sized buffer per first write.
      return await this.#writeWhole(index, data, offsetBytes);
    }
    // The store copies it (a local store without a trip through JavaScript).
    const ref = this.#context.refs.next();
    const crcs = await this.#context.store.copyBlock(current, ref, offsetBytes, data, expectDigest);
    this.#refs[index] = ref;
    return crcs;
  }

  writeRangeNow(
    index: number,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array | null {
    this.#checkWritable(index);
    const { store, refs } = this.#context;
    const current = this.#refs[index];
    if (current === undefined || current.isZero()) return null;
    if (refs.ownsRef(current)) {
      return store.writeBlockRangeNow?.(current, offsetBytes, data, expectDigest) ?? null;
    }
    // The ref is taken only once the copy is made: a refusal wastes no number.
    const ref = refs.peekNext();
    const crcs = store.copyBlockNow?.(current, ref, offsetBytes, data, expectDigest) ?? null;
    if (crcs === null) return null;
    refs.next();
    this.#refs[index] = ref;
    return crcs;
  }

  truncate(lengthBlocks: number): void {
    if (lengthBlocks < this.#refs.length) this.#refs.length = lengthBlocks;
    while (this.#refs.length < lengthBlocks) this.#refs.push(BlockRef.ZERO);
  }

  trim(fromIndex: number, toIndex: number): void {
    for (let i = fromIndex; i < toIndex && i < this.#refs.length; i++) {
      this.#refs[i] = BlockRef.ZERO;
    }
  }

  blockRefs(): BlockRef[] {
    return this.#refs.filter((ref) => !ref.isZero());
  }

  marshal(): MarshalledLayer[] {
    const content = new Uint8Array(this.#refs.length * BLOCK_REF_SIZE_BYTES);
    this.#refs.forEach((ref, i) => ref.writeTo(content, i * BLOCK_REF_SIZE_BYTES));
    return [{ type: LayerKind.base, content }];
  }

  /** Stores block `index` whole: `data` at `offsetBytes`, zeros elsewhere. */
  async #writeWhole(index: number, data: Uint8Array, offsetBytes: number): Promise<Uint32Array> {
    // A block already written in this session is replaced under its own ref.
    const current = this.#refs[index];
    const ref = current !== undefined && this.#context.refs.ownsRef(current)
      ? current
      : this.#context.refs.next();
    const crcs = await this.#context.store.writeBlock(ref, data, offsetBytes);
    this.#refs[index] = ref;
    return crcs;
  }

  #checkWritable(index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index > this.#refs.length) {
      throw new BlockNotFoundError(
        `Cannot write block ${index}: the file has ${this.#refs.length} blocks`,
      );
    }
  }
}
