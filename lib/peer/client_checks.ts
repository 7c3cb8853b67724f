/**
 * What every `PeerClient` (`transport.ts`) checks, whatever carries its calls: the
 * arguments before anything is sent (a bad one is a `RangeError` and the
 * peer never sees the call) and what a peer returns (bytes that do not match
 * the sector CRCs sent with them are a `BlockCorruptError`, never wrong
 * bytes). Pure and synchronous: the TCP client (`peer_client.ts`) and the
 * memory client (`memory_transport.ts`) both call these, so both transports
 * refuse and verify exactly the same things.
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";
import { crc32 } from "../core/crc32.ts";
import { firstBadSector, sectorSizeBytes } from "../core/sector.ts";
import { BlockCorruptError } from "../errors.ts";
import { type BlockRange, type BlockRead, checkRange } from "../storage/block_store.ts";
import { sectorAligned } from "./frame.ts";

/** Largest digest a block can have: a digest is a CRC-32. */
const DIGEST_MAX = 0xffff_ffff;

/**
 * Checks a call timeout: a finite number of milliseconds above zero.
 *
 * @throws {RangeError} otherwise (zero, negative, `NaN`, `Infinity`).
 */
export function checkCallTimeout(timeoutMs: number): number {
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new RangeError(`Cannot use a timeout of ${timeoutMs} ms`);
  }
  return timeoutMs;
}

/**
 * Checks the range of a read and widens it to whole sectors, as a peer
 * returns them so that every byte can be checked against its sector's CRC.
 *
 * @returns `wanted`, the range asked for (defaults filled in), and `aligned`,
 * the whole sectors to ask the peer for.
 * @throws {RangeError} when `range` is not inside a block of `blockSizeBytes`.
 */
export function checkReadRange(
  blockSizeBytes: number,
  range: BlockRange | undefined,
): { wanted: BlockRange; aligned: BlockRange } {
  const wanted = checkRange(blockSizeBytes, range);
  return { wanted, aligned: sectorAligned(blockSizeBytes, wanted) };
}

/**
 * Checks the data of a whole-block write: at most a block (a shorter one is
 * zero-padded by the store).
 *
 * @throws {RangeError} when `lengthBytes` is more than a block.
 */
export function checkWriteLength(blockSizeBytes: number, ref: BlockRef, lengthBytes: number): void {
  if (lengthBytes > blockSizeBytes) {
    throw new RangeError(
      `Cannot write ${lengthBytes} bytes to ${ref}: a block has ${blockSizeBytes} bytes`,
    );
  }
}

/**
 * Checks a range write: the bytes inside the block, and the expected digest,
 * when given, a u32.
 *
 * @throws {RangeError} otherwise.
 */
export function checkWriteRange(
  blockSizeBytes: number,
  offsetBytes: number,
  lengthBytes: number,
  expectDigest: number | undefined,
): void {
  checkRange(blockSizeBytes, { offsetBytes, lengthBytes });
  if (
    expectDigest !== undefined &&
    !(Number.isInteger(expectDigest) && expectDigest >= 0 && expectDigest <= DIGEST_MAX)
  ) {
    throw new RangeError(`Cannot expect digest ${expectDigest}: not a u32`);
  }
}

/**
 * Checks a peer's reply to a read of the whole sectors `aligned` (see
 * {@linkcode checkReadRange}) and cuts out the bytes of `wanted`. Every
 * sector returned must match its CRC in `sectorCrcs` (the whole block's,
 * as the peer sent them). `data` must hold exactly `aligned.lengthBytes`
 * bytes; the returned `data` may be `data` itself when nothing is cut.
 *
 * @throws {BlockCorruptError} when a sector does not match its CRC: the peer's
 * copy or the reply is damaged, or the peer lies.
 */
export function verifyRead(
  address: string,
  ref: BlockRef,
  blockSizeBytes: number,
  wanted: BlockRange,
  aligned: BlockRange,
  data: Uint8Array,
  sectorCrcs: Uint32Array,
): BlockRead {
  const sector = sectorSizeBytes(blockSizeBytes);
  const first = aligned.offsetBytes / sector;
  const bad = firstBadSector(data, sector, sectorCrcs, first);
  if (bad >= 0) {
    throw new BlockCorruptError(`${address}: sector ${bad} of ${ref} does not match its checksum`);
  }
  const start = wanted.offsetBytes - aligned.offsetBytes;
  return {
    data: start === 0 && wanted.lengthBytes === data.length
      ? data
      : data.slice(start, start + wanted.lengthBytes),
    sectorCrcs,
  };
}

/**
 * Checks the sector CRCs a peer returned for a range write of `data` at
 * `offsetBytes`: every sector the data covers whole must now hold exactly
 * the data sent. (Edge sectors merge with bytes the client does not know.)
 *
 * @throws {BlockCorruptError} when one does not: the peer acknowledged a
 * write it did not make.
 */
export function verifyWrittenSectors(
  address: string,
  ref: BlockRef,
  blockSizeBytes: number,
  offsetBytes: number,
  data: Uint8Array,
  crcs: Uint32Array,
): void {
  const sector = sectorSizeBytes(blockSizeBytes);
  const first = Math.ceil(offsetBytes / sector);
  const end = Math.floor((offsetBytes + data.length) / sector);
  for (let i = first; i < end; i++) {
    const start = i * sector - offsetBytes;
    if (crc32(data.subarray(start, start + sector)) !== crcs[i]) {
      throw new BlockCorruptError(
        `${address}: acknowledged a write to ${ref} whose sector ${i} CRC does not ` +
          "match the data sent",
      );
    }
  }
}
