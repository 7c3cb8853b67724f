/**
 * The 24-byte encoding of a block ref, as rings hash it, into one reused
 * buffer. `BlockRef.toBytes()` allocates a buffer and a `DataView` per call,
 * which costs more than the MD5 of a lookup; placement calls this once per
 * block and consumes the bytes at once, so one buffer serves every call.
 *
 * @module
 */
import { BLOCK_REF_SIZE_BYTES, type BlockRef, writeU64 } from "../core/block_ref.ts";

const TWO_32 = 0x1_0000_0000;
const buffer = new Uint8Array(BLOCK_REF_SIZE_BYTES);
const view = new DataView(buffer.buffer);

/**
 * `ref.toBytes()`, in a buffer overwritten by the next call: hash it before
 * calling again.
 */
export function refBytes(ref: BlockRef): Uint8Array {
  view.setUint32(0, ref.volume % TWO_32, true);
  view.setUint32(4, Math.floor(ref.volume / TWO_32) | (ref.type << 8), true);
  writeU64(view, 8, ref.inode);
  writeU64(view, 16, ref.index);
  return buffer;
}
