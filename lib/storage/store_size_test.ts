import assertNode from "node:assert/strict";
import { statfs } from "node:fs/promises";
import { filesystemSizeBytes, resolveStoreSizeBytes } from "./store_size.ts";

Deno.test("resolveStoreSizeBytes(): bytes are rounded down to whole blocks", async () => {
  assertNode.equal(await resolveStoreSizeBytes({ bytes: 10 * 4096 + 100 }, "/", 4096), 40960);
  assertNode.equal(await resolveStoreSizeBytes({ bytes: 1024 ** 3 }, "/"), 1024 ** 3);
});

Deno.test("resolveStoreSizeBytes(): fewer than two blocks is a RangeError", async () => {
  await assertNode.rejects(resolveStoreSizeBytes({ bytes: 8191 }, "/", 4096), (error: Error) => {
    assertNode.ok(error instanceof RangeError);
    assertNode.match(error.message, /at least 2 blocks of 4 KiB/);
    return true;
  });
  await assertNode.rejects(resolveStoreSizeBytes({ bytes: 0 }, "/"), RangeError);
  await assertNode.rejects(
    resolveStoreSizeBytes({ percent: 1 }, "/", 16 * 1024 ** 4),
    /Cannot use a block store of 1% of the/,
  );
});

Deno.test("resolveStoreSizeBytes(): a percentage of the filesystem, measured at an existing ancestor", async () => {
  const root = await Deno.makeTempDir({ prefix: "torus-store-size-" });
  try {
    const stats = await statfs(root);
    const total = stats.blocks * stats.bsize;
    const missing = `${root}/not/yet/block`;
    assertNode.equal(await filesystemSizeBytes(missing), total);
    const blockSize = 4096;
    const expected = Math.floor(Math.floor((total * 10) / 100) / blockSize) * blockSize;
    assertNode.equal(await resolveStoreSizeBytes({ percent: 10 }, missing, blockSize), expected);
    assertNode.equal(
      await resolveStoreSizeBytes({ percent: 100 }, root, blockSize),
      Math.floor(total / blockSize) * blockSize,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
