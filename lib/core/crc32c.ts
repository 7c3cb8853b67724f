/**
 * CRC-32C (Castagnoli), the checksum of every sector Torus stores: the same
 * polynomial as iSCSI, ext4 metadata and Ceph BlueStore. Slicing-by-8 tables.
 *
 * @module
 */

const POLY = 0x82f63b78;
const TABLES: Uint32Array[] = [];
{
  const t0 = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[n] = c >>> 0;
  }
  TABLES.push(t0);
  for (let t = 1; t < 8; t++) {
    const prev = TABLES[t - 1]!;
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) table[n] = (prev[n]! >>> 8) ^ t0[prev[n]! & 0xff]!;
    TABLES.push(table);
  }
}
const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
];

/**
 * CRC-32C of `data`, continuing from `previous` (0 to start).
 *
 * @example Usage
 * ```ts
 * import { crc32c } from "./crc32c.ts";
 * // The standard check value of CRC-32C.
 * if (crc32c(new TextEncoder().encode("123456789")) !== 0xe3069283) throw new Error("wrong");
 * ```
 */
export function crc32c(data: Uint8Array, previous = 0): number {
  let crc = ~previous >>> 0;
  let i = 0;
  const length = data.length;
  const aligned = length - (length % 8);
  while (i < aligned) {
    const a = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) ^ crc;
    crc = T7[a & 0xff]! ^ T6[(a >>> 8) & 0xff]! ^ T5[(a >>> 16) & 0xff]! ^ T4[a >>> 24]! ^
      T3[data[i + 4]!]! ^ T2[data[i + 5]!]! ^ T1[data[i + 6]!]! ^ T0[data[i + 7]!]!;
    i += 8;
  }
  while (i < length) crc = (crc >>> 8) ^ T0[(crc ^ data[i++]!) & 0xff]!;
  return ~crc >>> 0;
}
