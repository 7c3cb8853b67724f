/**
 * Sector geometry and checksums of a block. A block of `blockSizeBytes` is
 * split into sectors of {@linkcode sectorSizeBytes} (4 KiB, or the whole block
 * when blocks are smaller). Every stored sector carries a CRC-32, so that a
 * 4 KiB read is verified without reading the whole block, and the block's
 * digest (the CRC-32 of its sector CRCs, little-endian) is what the `crc`
 * blockset layer records in the INode.
 *
 * @module
 */
import { assert } from "../assert.ts";
import { BLOCK_SIZE_BYTES_MAX, BLOCK_SIZE_BYTES_MIN, SECTOR_SIZE_BYTES } from "../constants.ts";
import { formatSize } from "../size.ts";
import { crc32, Crc32Combiner } from "./crc32.ts";

/**
 * Checks the block size a new data directory or cluster is initialized
 * with: a power of two from {@linkcode BLOCK_SIZE_BYTES_MIN} to
 * {@linkcode BLOCK_SIZE_BYTES_MAX}. Anything else would split a volume's
 * 4 KiB pages across blocks (a 1000-byte block), or advertise an NBD
 * preferred block size that is not a power of two.
 *
 * @throws {RangeError} otherwise, naming the limits.
 *
 * @example Usage
 * ```ts
 * import { checkNewBlockSize } from "./sector.ts";
 * checkNewBlockSize(512 * 1024); // fine
 * try {
 *   checkNewBlockSize(1000);
 *   throw new Error("accepted");
 * } catch (error) {
 *   if (!(error instanceof RangeError)) throw error;
 * }
 * ```
 */
export function checkNewBlockSize(blockSizeBytes: number): void {
  if (
    !Number.isSafeInteger(blockSizeBytes) || blockSizeBytes < BLOCK_SIZE_BYTES_MIN ||
    blockSizeBytes > BLOCK_SIZE_BYTES_MAX || (blockSizeBytes & (blockSizeBytes - 1)) !== 0
  ) {
    const size = Number.isSafeInteger(blockSizeBytes) && blockSizeBytes >= 0
      ? formatSize(blockSizeBytes)
      : String(blockSizeBytes);
    throw new RangeError(
      `Cannot use a block size of ${size}: it must be a power of two from ${
        formatSize(BLOCK_SIZE_BYTES_MIN)
      } to ${formatSize(BLOCK_SIZE_BYTES_MAX)}`,
    );
  }
}

/** The sector size for a block size. */
export function sectorSizeBytes(blockSizeBytes: number): number {
  return Math.min(SECTOR_SIZE_BYTES, blockSizeBytes);
}

/** Sectors per block. */
export function sectorsPerBlock(blockSizeBytes: number): number {
  const sector = sectorSizeBytes(blockSizeBytes);
  assert(blockSizeBytes % sector === 0, `block size ${blockSizeBytes} is not whole sectors`);
  return blockSizeBytes / sector;
}

/** CRC-32 of every sector of a full block. */
export function sectorCrcs(block: Uint8Array, blockSizeBytes: number): Uint32Array {
  assert(block.length === blockSizeBytes, `block has ${block.length} bytes, not ${blockSizeBytes}`);
  const sector = sectorSizeBytes(blockSizeBytes);
  const crcs = new Uint32Array(blockSizeBytes / sector);
  for (let i = 0; i < crcs.length; i++) {
    crcs[i] = crc32(block.subarray(i * sector, (i + 1) * sector));
  }
  return crcs;
}

/** CRC-32 of every sector of `data` zero-padded to a block (`data` may be a whole block). */
export function paddedSectorCrcs(data: Uint8Array, blockSizeBytes: number): Uint32Array {
  assert(
    data.length <= blockSizeBytes,
    `${data.length} bytes do not fit a block of ${blockSizeBytes}`,
  );
  if (data.length === blockSizeBytes) return sectorCrcs(data, blockSizeBytes);
  const block = new Uint8Array(blockSizeBytes);
  block.set(data);
  return sectorCrcs(block, blockSizeBytes);
}

/**
 * The first sector of `data` (whole sectors of `sectorBytes`, the first of
 * them sector `first` of its block) whose CRC-32 is not `crcs[first + i]`,
 * as its index in the block; -1 when all match. A run of sectors is checked
 * with one CRC-32 over all of them against their CRCs combined
 * ({@linkcode Crc32Combiner}), which costs about a third of one call per
 * sector; sector by sector only when that fails, to name the sector. A
 * sector that has no CRC in `crcs` fails.
 *
 * @example Usage
 * ```ts
 * import { crc32 } from "./crc32.ts";
 * import { firstBadSector } from "./sector.ts";
 * const data = new Uint8Array(8192).fill(7);
 * const crcs = new Uint32Array([0, crc32(data.subarray(0, 4096)), crc32(data.subarray(4096))]);
 * if (firstBadSector(data, 4096, crcs, 1) !== -1) throw new Error("wrong");
 * data[5000] = 0;
 * if (firstBadSector(data, 4096, crcs, 1) !== 2) throw new Error("wrong");
 * ```
 */
export function firstBadSector(
  data: Uint8Array,
  sectorBytes: number,
  crcs: Uint32Array,
  first: number,
): number {
  const count = data.length / sectorBytes;
  // Constant messages: this runs for every read, and a template would be built each time.
  assert(Number.isInteger(count), "firstBadSector: the data is not whole sectors");
  assert(Number.isSafeInteger(first) && first >= 0, "firstBadSector: bad first sector");
  // A sector with no CRC in `crcs` (a short reply from a peer) fails.
  const checkable = Math.max(0, Math.min(count, crcs.length - first));
  if (
    checkable === count && count > 1 &&
    crc32(data) === Crc32Combiner.of(sectorBytes).combineAll(crcs, first, count)
  ) {
    return -1;
  }
  for (let i = 0; i < count; i++) {
    if (
      i >= checkable ||
      crc32(data.subarray(i * sectorBytes, (i + 1) * sectorBytes)) !== crcs[first + i]
    ) {
      return first + i;
    }
  }
  return -1;
}

/** True when typed arrays are little-endian, as on x86-64 and aarch64. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The digest of a block: CRC-32 over its sector CRCs as u32 LE. */
export function blockDigest(crcs: Uint32Array): number {
  if (LITTLE_ENDIAN) return crc32(new Uint8Array(crcs.buffer, crcs.byteOffset, crcs.byteLength));
  const bytes = new Uint8Array(crcs.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < crcs.length; i++) view.setUint32(i * 4, crcs[i]!, true);
  return crc32(bytes);
}

const zeroCrcsCache = new Map<number, { crcs: Uint32Array; digest: number }>();

function zeroBlock(blockSizeBytes: number): { crcs: Uint32Array; digest: number } {
  let zero = zeroCrcsCache.get(blockSizeBytes);
  if (zero === undefined) {
    const crc = crc32(new Uint8Array(sectorSizeBytes(blockSizeBytes)));
    const crcs = new Uint32Array(sectorsPerBlock(blockSizeBytes)).fill(crc);
    zero = { crcs, digest: blockDigest(crcs) };
    zeroCrcsCache.set(blockSizeBytes, zero);
  }
  return zero;
}

/** Sector CRCs of an all-zero block of `blockSizeBytes` (a fresh copy). */
export function zeroSectorCrcs(blockSizeBytes: number): Uint32Array {
  return zeroBlock(blockSizeBytes).crcs.slice();
}

/** The digest of an all-zero block of `blockSizeBytes` (cached). */
export function zeroBlockDigest(blockSizeBytes: number): number {
  return zeroBlock(blockSizeBytes).digest;
}
