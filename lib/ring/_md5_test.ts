import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Prng } from "../prng.ts";
import { MD5_SINGLE_BLOCK_BYTES_MAX, md5FirstWord } from "./_md5.ts";

function reference(message: Uint8Array): number {
  return createHash("md5").update(message).digest().readUInt32LE(0);
}

Deno.test("md5FirstWord() matches the RFC 1321 test suite", () => {
  const encoder = new TextEncoder();
  const suite: [string, string][] = [
    ["", "d41d8cd98f00b204e9800998ecf8427e"],
    ["a", "0cc175b9c0f1b6a831c399e269772661"],
    ["abc", "900150983cd24fb0d6963f7d28e17f72"],
    ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
    ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
  ];
  for (const [text, hex] of suite) {
    const expected = new DataView(Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16)).buffer)
      .getUint32(0, true);
    assert.equal(md5FirstWord(encoder.encode(text)), expected, text);
  }
});

Deno.test("md5FirstWord() agrees with node:crypto for every length, inside and beyond one block", () => {
  const prng = new Prng(7);
  for (let length = 0; length <= MD5_SINGLE_BLOCK_BYTES_MAX + 20; length++) {
    for (let trial = 0; trial < 20; trial++) {
      const message = prng.fill(new Uint8Array(length));
      assert.equal(md5FirstWord(message), reference(message), `length ${length}`);
    }
  }
});
