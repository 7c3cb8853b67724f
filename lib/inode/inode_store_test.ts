import assert from "node:assert/strict";
import { BlockType, INodeRef } from "../core/block_ref.ts";
import { BlockNotFoundError } from "../errors.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { decodeINode, encodeINode, INodeStore } from "./inode_store.ts";

Deno.test("INodeStore writes an INode across blocks and reads it back", async () => {
  const store = new MemoryBlockStore({ blockSizeBytes: 256, numBlocks: 64 });
  const inodes = new INodeStore(store);
  const record = {
    ref: new INodeRef(2, 9),
    replaces: 8,
    sizeBytes: 123456,
    layers: [{ type: 1 as const, content: new Uint8Array(400).fill(7) }, {
      type: 0 as const,
      content: new Uint8Array(24 * 10),
    }],
  };
  await inodes.writeINode(record);
  assert.ok(store.usedBlocks() > 2, "spans several blocks");
  assert.ok(await store.hasBlock(record.ref.blockRef(BlockType.inode, 1)));
  assert.deepEqual(await inodes.getINode(record.ref), record);
  const used = store.usedBlocks();
  assert.equal(await inodes.deleteINode(record.ref), used);
  assert.equal(store.usedBlocks(), 0);
  await assert.rejects(inodes.getINode(record.ref), BlockNotFoundError);
});

Deno.test("decodeINode() rejects garbage with a SyntaxError", () => {
  assert.throws(() => decodeINode(new Uint8Array([0xff, 0xff, 0xff])), SyntaxError);
  const good = encodeINode({ ref: new INodeRef(1, 1), replaces: 0, sizeBytes: 1, layers: [] });
  assert.equal(decodeINode(good).sizeBytes, 1);
});
