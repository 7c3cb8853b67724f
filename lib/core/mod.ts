/**
 * The basic values every other part of Torus builds on.
 *
 * - `block_ref.ts`: {@linkcode BlockRef} and {@linkcode INodeRef}, the
 *   addresses of blocks and INodes, with the original's byte encodings.
 * - `crc32.ts` and `sector.ts`: the CRC-32 of every stored sector, sector
 *   geometry, and a block's digest.
 * - `buffer_pool.ts` and `slab.ts`: reuse of buffers on hot paths.
 *
 * @module
 */
export {
  BLOCK_REF_SIZE_BYTES,
  BlockRef,
  BlockType,
  INODE_REF_SIZE_BYTES,
  INodeRef,
  readU64,
  writeU64,
} from "./block_ref.ts";
export {
  BUFFER_POOL_CLASS_MAX_BYTES,
  BUFFER_POOL_CLASS_MIN_BYTES,
  BUFFER_POOL_HEADROOM_BYTES,
  BufferPool,
} from "./buffer_pool.ts";
export { crc32, crc32Combine, Crc32Combiner } from "./crc32.ts";
export {
  blockDigest,
  checkNewBlockSize,
  firstBadSector,
  paddedSectorCrcs,
  sectorCrcs,
  sectorSizeBytes,
  sectorsPerBlock,
  zeroBlockDigest,
  zeroSectorCrcs,
} from "./sector.ts";
export { Slab, SLAB_BYTES_DEFAULT } from "./slab.ts";
