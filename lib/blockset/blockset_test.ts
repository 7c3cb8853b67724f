import assert from "node:assert/strict";
import { BlockRef, BlockType, INodeRef } from "../core/block_ref.ts";
import { BlockCorruptError, BlockNotFoundError } from "../errors.ts";
import { Prng } from "../prng.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { Blockset } from "./blockset.ts";
import { parseBlockSpec } from "./spec.ts";

const BLOCK = 8192;
const full = { offsetBytes: 0, lengthBytes: BLOCK };

function setup(spec: string) {
  const store = new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 64 });
  const blocks = Blockset.fromSpec(parseBlockSpec(spec), store);
  blocks.beginSession(new INodeRef(3, 2));
  return { store, blocks };
}

for (const spec of ["base", "crc,base", "crc,rep=2,base", "rep=3,crc,base"]) {
  Deno.test(`Blockset(${spec}) writes, reads and round-trips through marshal()`, async () => {
    const prng = new Prng(7);
    const { store, blocks } = setup(spec);
    const data = [0, 1, 2].map(() => prng.fill(new Uint8Array(BLOCK)));
    for (const [i, block] of data.entries()) await blocks.write(i, block);
    blocks.truncate(5);
    assert.equal(blocks.length(), 5);
    const copy = Blockset.unmarshal(blocks.marshal(), store);
    for (const [i, block] of data.entries()) {
      assert.deepEqual(await copy.read(i, full), block);
      assert.deepEqual(
        await copy.read(i, { offsetBytes: 100, lengthBytes: 5000 }),
        block.subarray(100, 5100),
      );
    }
    assert.deepEqual(await copy.read(4, full), new Uint8Array(BLOCK));
    await assert.rejects(copy.read(5, full), BlockNotFoundError);
  });
}

Deno.test("Blockset.writeRange() changes session blocks in place and copies older ones", async () => {
  const { store, blocks } = setup("crc,base");
  await blocks.write(0, new Uint8Array(BLOCK).fill(1));
  const firstRefs = blocks.blockRefs();
  await blocks.writeRange(0, 10, new Uint8Array([9, 9]));
  assert.deepEqual(blocks.blockRefs(), firstRefs, "same session: same block");
  blocks.beginSession(new INodeRef(3, 3));
  await blocks.writeRange(0, 20, new Uint8Array([7]));
  const [newRef] = blocks.blockRefs();
  assert.equal(newRef!.inode, 3, "new session: copy-on-write into a new block");
  const data = await blocks.read(0, full);
  assert.equal(data[10], 9);
  assert.equal(data[20], 7);
  assert.equal(data[0], 1);
  // The old block is untouched: a reader of the old INode still sees it.
  assert.equal((await store.readBlock(firstRefs[0]!)).data[20], 1);
});

Deno.test("Blockset(crc) detects a block replaced behind its back", async () => {
  const { store, blocks } = setup("crc,base");
  await blocks.write(0, new Uint8Array(BLOCK).fill(1));
  const [ref] = blocks.blockRefs();
  // Valid sectors, wrong block: only the crc layer can tell.
  await store.writeBlock(ref!, new Uint8Array(BLOCK).fill(2));
  await assert.rejects(blocks.read(0, full), BlockCorruptError);
  assert.throws(() => blocks.readNow(0, full, new Uint8Array(BLOCK)), BlockCorruptError);
  await assert.rejects(blocks.read(0, { offsetBytes: 0, lengthBytes: 1 }), BlockCorruptError);
  await assert.rejects(blocks.writeRange(0, 0, new Uint8Array(1)), BlockCorruptError);
});

Deno.test("Blockset(crc,rep=2) falls back to the copy when the primary is corrupt", async () => {
  const { store, blocks } = setup("crc,rep=2,base");
  const data = new Prng(1).fill(new Uint8Array(BLOCK));
  await blocks.write(0, data);
  const refs = blocks.blockRefs();
  assert.equal(refs.length, 2);
  store.corruptForTest(refs[0]!, 5);
  const into = new Uint8Array(BLOCK);
  assert.equal(blocks.readNow(0, full, into), false, "replicas are read the waiting way");
  assert.deepEqual(await blocks.read(0, full), data);
  await store.writeBlock(refs[0]!, new Uint8Array(BLOCK));
  assert.deepEqual(await blocks.read(0, full), data, "a stale primary is skipped too");
  await store.deleteBlock(refs[1]!);
  await assert.rejects(
    blocks.read(0, full),
    (e) => e instanceof BlockCorruptError || e instanceof BlockNotFoundError,
  );
});

Deno.test("Blockset.trim() makes blocks sparse and drops their refs", async () => {
  const { blocks } = setup("crc,base");
  for (let i = 0; i < 4; i++) await blocks.write(i, new Uint8Array(BLOCK).fill(i + 1));
  blocks.trim(1, 3);
  assert.equal(blocks.blockRefs().length, 2);
  assert.deepEqual(await blocks.read(1, full), new Uint8Array(BLOCK));
  assert.equal((await blocks.read(3, full))[0], 4);
});

Deno.test("Blockset.unmarshal() rejects malformed layers", () => {
  const store = new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 1 });
  assert.throws(() => Blockset.unmarshal([], store), SyntaxError);
  assert.throws(
    () => Blockset.unmarshal([{ type: 0, content: new Uint8Array(5) }], store),
    SyntaxError,
  );
  assert.throws(
    () =>
      Blockset.unmarshal([{ type: 1, content: new Uint8Array(4) }, {
        type: 0,
        content: new Uint8Array(0),
      }], store),
    SyntaxError,
  );
  const ref = new BlockRef(1, BlockType.data, 1, 1).toBytes();
  const ok = Blockset.unmarshal([{ type: 0, content: ref }], store);
  assert.equal(ok.length(), 1);
});

Deno.test("Blockset.write() without a session is a TypeError", async () => {
  const store = new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 1 });
  const blocks = Blockset.fromSpec(parseBlockSpec("base"), store);
  await assert.rejects(blocks.write(0, new Uint8Array(1)), TypeError);
});
