import assertNode from "node:assert/strict";
import { Slab } from "./slab.ts";

Deno.test("Slab: views are zeroed, aligned, and never overlap while held", () => {
  const slab = new Slab(256);
  const held: Uint8Array[] = [];
  for (let i = 0; i < 100; i++) {
    const length = 1 + (i % 13);
    const bytes = slab.bytes(length);
    assertNode.equal(bytes.length, length);
    assertNode.equal(bytes.byteOffset % 8, 0);
    assertNode.ok(bytes.every((byte) => byte === 0), `view ${i} is not zeroed`);
    bytes.fill(i + 1);
    held.push(bytes);
  }
  // Every view still holds what was written into it: none was handed out twice.
  held.forEach((bytes, i) => assertNode.ok(bytes.every((byte) => byte === i + 1), `view ${i}`));
});

Deno.test("Slab: words are Uint32Arrays of the asked length; long requests stand alone", () => {
  const slab = new Slab(256);
  const words = slab.words(16);
  assertNode.ok(words instanceof Uint32Array);
  assertNode.equal(words.length, 16);
  const long = slab.bytes(65); // more than a quarter of the slab
  assertNode.equal(long.length, 65);
  assertNode.equal(long.byteOffset, 0);
  assertNode.equal(long.buffer.byteLength, 65);
  assertNode.equal(slab.bytes(0).length, 0);
});

Deno.test("Slab: a bad size or length is a bug", () => {
  assertNode.throws(() => new Slab(10));
  assertNode.throws(() => new Slab(100)); // not a multiple of 8
  assertNode.throws(() => new Slab().bytes(-1));
  assertNode.throws(() => new Slab().words(1.5));
});
