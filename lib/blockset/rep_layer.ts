/**
 * The `rep=N` layer: N copies of every block under distinct refs (so that a
 * ring places them on different peers). A read falls back to the next copy
 * when one is missing, corrupt, or does not match the expected digest.
 *
 * Marshalled as `i32 LE N`, then per extra copy `i32 LE count` and `count ×
 * 24-byte refs`, as in the original.
 *
 * @module
 */
import { BLOCK_REF_SIZE_BYTES, BlockRef } from "../core/block_ref.ts";
import { blockDigest } from "../core/sector.ts";
import { REPLICAS_MAX } from "../constants.ts";
import { BlockCorruptError, BlockNotFoundError, TorusError } from "../errors.ts";
import type { BlockRange, BlockRead } from "../storage/block_store.ts";
import { type Layer, type LayerContext, LayerKind, type MarshalledLayer } from "./layer.ts";

/** Default copies of `rep` without `=N`, as in the original. */
export const REP_DEFAULT = 2;

/** The replication layer. */
export class RepLayer implements Layer {
  readonly kind = LayerKind.rep;
  #context: LayerContext;
  #sub: Layer;
  /** `#copies[c][i]`: ref of extra copy c of block i. */
  #copies: BlockRef[][];

  constructor(context: LayerContext, sub: Layer, replication: number, copies?: BlockRef[][]) {
    if (!Number.isInteger(replication) || replication < 1 || replication > REPLICAS_MAX) {
      throw new RangeError(
        `Cannot build rep layer: replication must be between 1 and ${REPLICAS_MAX}: current value is ${replication}`,
      );
    }
    this.#context = context;
    this.#sub = sub;
    this.#copies = copies ??
      Array.from({ length: replication - 1 }, () => new Array(sub.length()).fill(BlockRef.ZERO));
    for (const copy of this.#copies) {
      if (copy.length !== sub.length()) {
        throw new SyntaxError(`Cannot build rep layer: ${copy.length} refs for ${sub.length()}`);
      }
    }
  }

  /** Copies of every block, including the primary. */
  get replication(): number {
    return this.#copies.length + 1;
  }

  /** Unmarshals `content`. @throws {SyntaxError} */
  static unmarshal(context: LayerContext, sub: Layer, content: Uint8Array): RepLayer {
    const view = new DataView(content.buffer, content.byteOffset, content.length);
    const need = (bytes: number, offset: number) => {
      if (offset + bytes > content.length) {
        throw new SyntaxError(`Cannot decode rep layer: truncated at byte ${offset}`);
      }
    };
    need(4, 0);
    const replication = view.getInt32(0, true);
    if (replication < 1 || replication > REPLICAS_MAX) {
      throw new SyntaxError(`Cannot decode rep layer: replication ${replication} is out of range`);
    }
    let offset = 4;
    const copies: BlockRef[][] = [];
    for (let c = 0; c < replication - 1; c++) {
      need(4, offset);
      const count = view.getInt32(offset, true);
      offset += 4;
      need(count * BLOCK_REF_SIZE_BYTES, offset);
      const refs: BlockRef[] = [];
      for (let i = 0; i < count; i++, offset += BLOCK_REF_SIZE_BYTES) {
        refs.push(BlockRef.fromBytes(content, offset));
      }
      copies.push(refs);
    }
    return new RepLayer(context, sub, replication, copies);
  }

  length(): number {
    return this.#sub.length();
  }

  isSparse(index: number): boolean {
    return this.#sub.isSparse(index);
  }

  async read(
    index: number,
    range: BlockRange,
    expectDigest?: number,
    into?: Uint8Array,
  ): Promise<BlockRead> {
    let lastError: unknown;
    try {
      const result = await this.#sub.read(index, range, expectDigest, into);
      if (expectDigest === undefined || blockDigest(result.sectorCrcs) === expectDigest) {
        return result;
      }
      lastError = new BlockCorruptError(`Cannot read block ${index}: primary copy is stale`);
    } catch (error) {
      if (index >= this.length() || !(error instanceof TorusError)) throw error;
      lastError = error;
    }
    for (const copy of this.#copies) {
      const ref = copy[index];
      if (ref === undefined || ref.isZero()) continue;
      try {
        const result = await this.#context.store.readBlock(ref, range, expectDigest, into);
        if (expectDigest === undefined || blockDigest(result.sectorCrcs) === expectDigest) {
          return result;
        }
      } catch (error) {
        if (!(error instanceof TorusError)) throw error;
        lastError = error;
      }
    }
    throw lastError instanceof Error
      ? lastError
      : new BlockNotFoundError(`Cannot read block ${index}: no copy is readable`);
  }

  async write(index: number, data: Uint8Array): Promise<Uint32Array> {
    const crcs = await this.#sub.write(index, data);
    await this.#writeCopies(index, data);
    return crcs;
  }

  async writeRange(
    index: number,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    const crcs = await this.#sub.writeRange(index, offsetBytes, data, expectDigest);
    const digest = blockDigest(crcs);
    const owned = this.#copies.every((copy) => {
      const ref = copy[index];
      return ref !== undefined && this.#context.refs.ownsRef(ref);
    });
    if (owned) {
      for (const copy of this.#copies) {
        const copyCrcs = await this.#context.store.writeBlockRange(copy[index]!, offsetBytes, data);
        if (blockDigest(copyCrcs) !== digest) {
          // The copy had drifted from the primary: replace it whole.
          await this.#writeCopies(index, (await this.#sub.read(index, this.#fullRange())).data);
          break;
        }
      }
    } else {
      await this.#writeCopies(index, (await this.#sub.read(index, this.#fullRange())).data);
    }
    return crcs;
  }

  #fullRange(): BlockRange {
    return { offsetBytes: 0, lengthBytes: this.#context.blockSizeBytes };
  }

  async #writeCopies(index: number, data: Uint8Array): Promise<void> {
    for (const copy of this.#copies) {
      const ref = this.#context.refs.next();
      await this.#context.store.writeBlock(ref, data);
      copy[index] = ref;
    }
  }

  truncate(lengthBlocks: number): void {
    this.#sub.truncate(lengthBlocks);
    for (const copy of this.#copies) {
      if (lengthBlocks < copy.length) copy.length = lengthBlocks;
      while (copy.length < lengthBlocks) copy.push(BlockRef.ZERO);
    }
  }

  trim(fromIndex: number, toIndex: number): void {
    this.#sub.trim(fromIndex, toIndex);
    for (const copy of this.#copies) {
      for (let i = fromIndex; i < toIndex && i < copy.length; i++) copy[i] = BlockRef.ZERO;
    }
  }

  blockRefs(): BlockRef[] {
    const refs = this.#sub.blockRefs();
    for (const copy of this.#copies) for (const ref of copy) if (!ref.isZero()) refs.push(ref);
    return refs;
  }

  marshal(): MarshalledLayer[] {
    let size = 4;
    for (const copy of this.#copies) size += 4 + copy.length * BLOCK_REF_SIZE_BYTES;
    const content = new Uint8Array(size);
    const view = new DataView(content.buffer);
    view.setInt32(0, this.replication, true);
    let offset = 4;
    for (const copy of this.#copies) {
      view.setInt32(offset, copy.length, true);
      offset += 4;
      for (const ref of copy) {
        ref.writeTo(content, offset);
        offset += BLOCK_REF_SIZE_BYTES;
      }
    }
    return [{ type: LayerKind.rep, content }, ...this.#sub.marshal()];
  }
}
