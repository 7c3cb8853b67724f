/**
 * CRC-32 (IEEE 802.3, the polynomial of zlib, gzip and the original Torus's
 * `crc32.ChecksumIEEE`), the checksum of every sector Torus stores. It runs
 * in zlib's native code through `node:zlib`: about 100 times faster than a
 * table-driven CRC in JavaScript, which decides whether checksumming every
 * 4 KiB sector costs anything (see Documentation/storage.md).
 *
 * @module
 */
import { crc32 as zlibCrc32 } from "node:zlib";

/**
 * CRC-32 of `data`, continuing from `previous` (0 to start).
 *
 * @example Usage
 * ```ts
 * import { crc32 } from "./crc32.ts";
 * // The standard check value of CRC-32.
 * if (crc32(new TextEncoder().encode("123456789")) !== 0xcbf43926) throw new Error("wrong");
 * ```
 */
export function crc32(data: Uint8Array, previous = 0): number {
  return zlibCrc32(data, previous) >>> 0;
}
