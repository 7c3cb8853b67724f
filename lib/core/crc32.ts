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

/** The CRC-32 polynomial, bit-reflected (x^0 in the top bit). */
const CRC32_POLYNOMIAL_REFLECTED = 0xedb8_8320;
/** The polynomial 1 (x^0) in the reflected representation. */
const X_POWER_0 = 0x8000_0000;
/** The polynomial x (x^1) in the reflected representation. */
const X_POWER_1 = 0x4000_0000;

/** `a × b` modulo the CRC-32 polynomial, both in the reflected representation. */
function multiplyModPolynomial(a: number, b: number): number {
  let product = 0;
  for (let bit = X_POWER_0; bit !== 0; bit >>>= 1) {
    if ((a & bit) !== 0) product ^= b;
    b = (b & 1) !== 0 ? (b >>> 1) ^ CRC32_POLYNOMIAL_REFLECTED : b >>> 1;
  }
  return product >>> 0;
}

/** x^(8 × lengthBytes) modulo the CRC-32 polynomial: appending that many bytes, as a factor. */
function byteShiftFactor(lengthBytes: number): number {
  let result = X_POWER_0;
  let square = X_POWER_1;
  // Exponent 8 × lengthBytes, bit by bit; 8 × 2^50 still fits a double exactly.
  let exponent = 8 * lengthBytes;
  while (exponent > 0) {
    if (exponent % 2 === 1) result = multiplyModPolynomial(result, square);
    square = multiplyModPolynomial(square, square);
    exponent = Math.floor(exponent / 2);
  }
  return result;
}

/**
 * CRC-32 of the concatenation `a ‖ b` from `crcA = crc32(a)`, `crcB =
 * crc32(b)` and `b`'s length, without the bytes (as zlib's
 * `crc32_combine`).
 *
 * @example Usage
 * ```ts
 * import { crc32, crc32Combine } from "./crc32.ts";
 * const bytes = new TextEncoder().encode("123456789");
 * const crc = crc32Combine(crc32(bytes.subarray(0, 4)), crc32(bytes.subarray(4)), 5);
 * if (crc !== crc32(bytes)) throw new Error("wrong");
 * ```
 */
export function crc32Combine(crcA: number, crcB: number, lengthBytesB: number): number {
  return (multiplyModPolynomial(byteShiftFactor(lengthBytesB), crcA >>> 0) ^ crcB) >>> 0;
}

/**
 * Combines CRC-32s of pieces that are all `pieceBytes` long, fast: the CRC
 * of a run of sectors from the sectors' own CRCs, so that a read verifies
 * the run with one CRC-32 over its bytes rather than one per sector (the
 * per-call cost of `crc32` is about that of checksumming 4 KiB). Appending
 * `pieceBytes` multiplies a CRC by a fixed polynomial, a linear map of its
 * 32 bits, applied here a byte at a time from four tables of 256 entries.
 *
 * @example Usage
 * ```ts
 * import { crc32, Crc32Combiner } from "./crc32.ts";
 * const sectors = [new Uint8Array(4096).fill(1), new Uint8Array(4096).fill(2)];
 * const combiner = Crc32Combiner.of(4096);
 * const whole = new Uint8Array(8192);
 * whole.set(sectors[0]!);
 * whole.set(sectors[1]!, 4096);
 * const crcs = new Uint32Array(sectors.map((sector) => crc32(sector)));
 * if (combiner.combineAll(crcs, 0, 2) !== crc32(whole)) throw new Error("wrong");
 * ```
 */
export class Crc32Combiner {
  static #cache = new Map<number, Crc32Combiner>();
  /** Length of every piece, in bytes. */
  readonly pieceBytes: number;
  /** `tables[256 × k + v]`: the shift of the value `v << 8k`. */
  #tables = new Uint32Array(4 * 256);

  private constructor(pieceBytes: number) {
    this.pieceBytes = pieceBytes;
    const factor = byteShiftFactor(pieceBytes);
    for (let k = 0; k < 4; k++) {
      for (let v = 0; v < 256; v++) {
        this.#tables[256 * k + v] = multiplyModPolynomial(factor, (v << (8 * k)) >>> 0);
      }
    }
  }

  /** The combiner for pieces of `pieceBytes` (cached). */
  static of(pieceBytes: number): Crc32Combiner {
    let combiner = Crc32Combiner.#cache.get(pieceBytes);
    if (combiner === undefined) {
      combiner = new Crc32Combiner(pieceBytes);
      Crc32Combiner.#cache.set(pieceBytes, combiner);
    }
    return combiner;
  }

  /** {@linkcode crc32Combine}`(crcA, crcB, pieceBytes)`. */
  combine(crcA: number, crcB: number): number {
    const t = this.#tables;
    return (t[crcA & 0xff]! ^ t[256 + ((crcA >>> 8) & 0xff)]! ^
      t[512 + ((crcA >>> 16) & 0xff)]! ^ t[768 + (crcA >>> 24)]! ^ crcB) >>> 0;
  }

  /** The CRC-32 of `count` consecutive pieces whose CRCs are `crcs[first]`, `crcs[first + 1]`, .... */
  combineAll(crcs: Uint32Array, first: number, count: number): number {
    let crc = crcs[first]!;
    for (let i = 1; i < count; i++) crc = this.combine(crc, crcs[first + i]!);
    return crc;
  }
}
