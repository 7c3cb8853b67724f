import assert from "node:assert/strict";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { VOLUME_ID_MAX } from "../constants.ts";
import { Prng } from "../prng.ts";
import { refBytes } from "./_ref_bytes.ts";

Deno.test("refBytes() encodes exactly as BlockRef.toBytes()", () => {
  const prng = new Prng(5);
  const big = (bound: number) => Math.floor(prng.nextFloat() * bound);
  const refs = [
    BlockRef.ZERO,
    new BlockRef(VOLUME_ID_MAX, BlockType.inode, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
  ];
  for (let i = 0; i < 1000; i++) {
    const type = prng.nextInt(2) === 0 ? BlockType.data : BlockType.inode;
    refs.push(new BlockRef(big(VOLUME_ID_MAX), type, big(2 ** 53), big(2 ** 40)));
  }
  for (const ref of refs) assert.deepEqual(refBytes(ref), ref.toBytes(), String(ref));
});
