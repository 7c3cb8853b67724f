/**
 * The first 32-bit word of an MD5 digest, for ketama lookups.
 *
 * Ketama hashes every block ref with MD5, and `node:crypto` costs about
 * 5 µs a call in Deno 2.9 (an object, a native call and a buffer per hash):
 * 40 s for the 8 million lookups of a default ringtool run. A ref is 24
 * bytes, so its MD5 is one 64-byte block: computed here in plain integer
 * arithmetic (RFC 1321) in a fraction of that. Longer messages, and the ring's
 * own points, go to `node:crypto`; the tests check both agree.
 *
 * @module
 */
import { createHash } from "node:crypto";

/** Longest message that fits in one MD5 block with its padding (64 - 1 - 8 bytes). */
export const MD5_SINGLE_BLOCK_BYTES_MAX = 55;

/** Per-step additive constants: floor(|sin(i + 1)| * 2^32). */
// deno-fmt-ignore
const K = new Uint32Array([
  0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
  0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
  0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
  0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
  0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
  0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
  0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
  0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
]);

/** Per-step left rotations. */
// deno-fmt-ignore
const SHIFT = new Uint8Array([
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
  5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
]);

/** Per-step message word. */
const WORD = new Uint8Array(64).map((_, i) => {
  if (i < 16) return i;
  if (i < 32) return (5 * i + 1) % 16;
  if (i < 48) return (3 * i + 5) % 16;
  return (7 * i) % 16;
});

const A0 = 0x67452301;
const B0 = 0xefcdab89;
const C0 = 0x98badcfe;
const D0 = 0x10325476;

/** The padded block, reused: computation is synchronous and single-threaded. */
const block = new Uint8Array(64);
const blockView = new DataView(block.buffer);
const words = new Uint32Array(16);

/**
 * The first four bytes of `md5(message)`, read as a little-endian u32.
 *
 * @example Usage
 * ```ts
 * import { md5FirstWord } from "./_md5.ts";
 * // md5("") = d41d8cd9…
 * if (md5FirstWord(new Uint8Array()) !== 0xd98c1dd4) throw new Error("wrong");
 * ```
 */
export function md5FirstWord(message: Uint8Array): number {
  if (message.length > MD5_SINGLE_BLOCK_BYTES_MAX) {
    const digest = createHash("md5").update(message).digest();
    return digest.readUInt32LE(0);
  }
  block.fill(0);
  block.set(message);
  block[message.length] = 0x80;
  blockView.setUint32(56, message.length * 8, true);
  for (let i = 0; i < 16; i++) words[i] = blockView.getUint32(i * 4, true);

  let a: number = A0;
  let b: number = B0;
  let c: number = C0;
  let d: number = D0;
  for (let i = 0; i < 64; i++) {
    let f: number;
    if (i < 16) f = (b & c) | (~b & d);
    else if (i < 32) f = (d & b) | (~d & c);
    else if (i < 48) f = b ^ c ^ d;
    else f = c ^ (b | ~d);
    const sum = (a + f + K[i]! + words[WORD[i]!]!) | 0;
    const shift = SHIFT[i]!;
    a = d;
    d = c;
    c = b;
    b = (b + ((sum << shift) | (sum >>> (32 - shift)))) | 0;
  }
  return (A0 + a) >>> 0;
}
