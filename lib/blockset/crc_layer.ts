/**
 * The `crc` layer: one digest per block, kept in the INode, checked on every
 * read. A block's digest is the CRC-32 of its sector CRCs
 * (`core/sector.ts`), so a 4 KiB read is checked end to end without reading
 * the other 508 KiB of the block: the store verifies the sectors it reads
 * against its sector CRCs, and this layer verifies those sector CRCs against
 * the digest the INode recorded when the block was written. A mismatch is a
 * {@linkcode BlockCorruptError}, never wrong bytes.
 *
 * Marshalled as `length × u32 LE`, as in the original (whose CRC was IEEE
 * over the whole block).
 *
 * @module
 */
import { blockDigest, zeroBlockDigest } from "../core/sector.ts";
import { BlockCorruptError, BlockNotFoundError } from "../errors.ts";
import type { BlockRange, BlockRead } from "../storage/block_store.ts";
import { type Layer, type LayerContext, LayerKind, type MarshalledLayer } from "./layer.ts";

/** Failed digest checks since start, for `/metrics`. */
export const crcFailures = { count: 0 };

/** The checksum layer. */
export class CrcLayer implements Layer {
  readonly kind = LayerKind.crc;
  #context: LayerContext;
  #sub: Layer;
  #digests: number[];

  constructor(context: LayerContext, sub: Layer, digests?: number[]) {
    this.#context = context;
    this.#sub = sub;
    this.#digests = digests ??
      new Array(sub.length()).fill(zeroBlockDigest(context.blockSizeBytes));
    if (this.#digests.length !== sub.length()) {
      throw new SyntaxError(
        `Cannot build crc layer: ${this.#digests.length} digests for ${sub.length()} blocks`,
      );
    }
  }

  /** Unmarshals `content` (length × u32 LE). @throws {SyntaxError} */
  static unmarshal(context: LayerContext, sub: Layer, content: Uint8Array): CrcLayer {
    if (content.length % 4 !== 0) {
      throw new SyntaxError(`Cannot decode crc layer: ${content.length} bytes is not whole u32s`);
    }
    const view = new DataView(content.buffer, content.byteOffset, content.length);
    const digests: number[] = [];
    for (let offset = 0; offset < content.length; offset += 4) {
      digests.push(view.getUint32(offset, true));
    }
    return new CrcLayer(context, sub, digests);
  }

  length(): number {
    return this.#digests.length;
  }

  isSparse(index: number): boolean {
    return this.#sub.isSparse(index);
  }

  async read(
    index: number,
    range: BlockRange,
    _expectDigest?: number,
    into?: Uint8Array,
  ): Promise<BlockRead> {
    const expected = this.#digests[index];
    if (expected === undefined) {
      throw new BlockNotFoundError(`Cannot read block ${index}: the file has ${this.length()}`);
    }
    return this.#checked(index, expected, await this.#sub.read(index, range, expected, into));
  }

  readNow(index: number, range: BlockRange, into: Uint8Array): BlockRead | null {
    const expected = this.#digests[index];
    if (expected === undefined) {
      throw new BlockNotFoundError(`Cannot read block ${index}: the file has ${this.length()}`);
    }
    const result = this.#sub.readNow?.(index, range, into) ?? null;
    return result === null ? null : this.#checked(index, expected, result);
  }

  /** `result`, when its sector CRCs have the digest the INode recorded. @throws {BlockCorruptError} */
  #checked(index: number, expected: number, result: BlockRead): BlockRead {
    if (blockDigest(result.sectorCrcs) !== expected) {
      crcFailures.count++;
      throw new BlockCorruptError(
        `Cannot read block ${index}: its checksum does not match the INode's`,
      );
    }
    return result;
  }

  async write(index: number, data: Uint8Array): Promise<Uint32Array> {
    const crcs = await this.#sub.write(index, data);
    this.#digests[index] = blockDigest(crcs);
    return crcs;
  }

  async writeRange(index: number, offsetBytes: number, data: Uint8Array): Promise<Uint32Array> {
    // A copy-on-write below builds on the old block: it must match its digest.
    const crcs = await this.#sub.writeRange(index, offsetBytes, data, this.#digests[index]);
    this.#digests[index] = blockDigest(crcs);
    return crcs;
  }

  writeRangeNow(index: number, offsetBytes: number, data: Uint8Array): Uint32Array | null {
    const crcs = this.#sub.writeRangeNow?.(index, offsetBytes, data, this.#digests[index]) ?? null;
    if (crcs !== null) this.#digests[index] = blockDigest(crcs);
    return crcs;
  }

  truncate(lengthBlocks: number): void {
    this.#sub.truncate(lengthBlocks);
    const zero = zeroBlockDigest(this.#context.blockSizeBytes);
    if (lengthBlocks < this.#digests.length) this.#digests.length = lengthBlocks;
    while (this.#digests.length < lengthBlocks) this.#digests.push(zero);
  }

  trim(fromIndex: number, toIndex: number): void {
    this.#sub.trim(fromIndex, toIndex);
    const zero = zeroBlockDigest(this.#context.blockSizeBytes);
    for (let i = fromIndex; i < toIndex && i < this.#digests.length; i++) this.#digests[i] = zero;
  }

  blockRefs() {
    return this.#sub.blockRefs();
  }

  marshal(): MarshalledLayer[] {
    const content = new Uint8Array(this.#digests.length * 4);
    const view = new DataView(content.buffer);
    this.#digests.forEach((digest, i) => view.setUint32(i * 4, digest, true));
    return [{ type: LayerKind.crc, content }, ...this.#sub.marshal()];
  }
}
