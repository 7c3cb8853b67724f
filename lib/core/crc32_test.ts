import assert from "node:assert/strict";
import { crc32, crc32Combine, Crc32Combiner } from "./crc32.ts";

Deno.test("crc32() matches the IEEE check value and continues across chunks", () => {
  const data = new TextEncoder().encode("123456789");
  assert.equal(crc32(data), 0xcbf43926);
  assert.equal(crc32(data.subarray(4), crc32(data.subarray(0, 4))), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});

Deno.test("crc32Combine() gives the CRC of the concatenation", () => {
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  for (
    const [lengthA, lengthB] of [[0, 5], [5, 0], [1, 1], [13, 4096], [4096, 4096], [777, 65536]]
  ) {
    const bytes = Uint8Array.from({ length: lengthA! + lengthB! }, random);
    const a = bytes.subarray(0, lengthA);
    const b = bytes.subarray(lengthA);
    assert.equal(crc32Combine(crc32(a), crc32(b), lengthB!), crc32(bytes), `${lengthA}+${lengthB}`);
  }
});

Deno.test("Crc32Combiner combines runs of equal pieces as crc32 of the run", () => {
  let seed = 11;
  const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  for (const pieceBytes of [512, 4096]) {
    const combiner = Crc32Combiner.of(pieceBytes);
    assert.equal(Crc32Combiner.of(pieceBytes), combiner);
    const bytes = Uint8Array.from({ length: 9 * pieceBytes }, random);
    const crcs = new Uint32Array(9);
    for (let i = 0; i < 9; i++) {
      crcs[i] = crc32(bytes.subarray(i * pieceBytes, (i + 1) * pieceBytes));
    }
    for (const [first, count] of [[0, 1], [0, 9], [2, 5], [8, 1]]) {
      const run = bytes.subarray(first! * pieceBytes, (first! + count!) * pieceBytes);
      assert.equal(combiner.combineAll(crcs, first!, count!), crc32(run), `${first}+${count}`);
    }
    // Any flipped bit anywhere in the run changes the combined CRC's match.
    const flipped = bytes.slice(0, 3 * pieceBytes);
    flipped[pieceBytes + 100]! ^= 0x10;
    assert.notEqual(combiner.combineAll(crcs, 0, 3), crc32(flipped));
  }
});
