import assert from "node:assert/strict";
import { cloneVolume, openBlockFile } from "../block/block_volume.ts";
import { LocalNode } from "../node/local_node.ts";
import { volumeUsage } from "./volume_ops.ts";

const BLOCK = 64 * 1024;

Deno.test("volumeUsage(): current blocks, blocks only snapshots keep, blocks shared as a clone", async () => {
  const dir = await Deno.makeTempDir({ prefix: "torus-du-" });
  const node = await LocalNode.open({ dataDir: dir, create: true });
  try {
    await node.initialize({ blockSizeBytes: BLOCK, defaultBlockSpec: "crc,base" });
    const context = await node.volumes({ bytes: 256 * BLOCK });
    const lease = (await node.lease()).lease;
    const volume = await node.metadata.createVolume("v", 8 * BLOCK);
    const write = async (offset: number, length: number, fill: number) => {
      const file = await openBlockFile(context, "v", { lease });
      await file.writeAt(new Uint8Array(length).fill(fill), offset);
      await file.close();
    };
    await write(0, 4 * BLOCK, 1); // blocks 0-3
    await node.metadata.saveSnapshot(volume.id, "s1");
    await cloneVolume(context, "v", "s1", "c", lease);
    await write(BLOCK, 2 * BLOCK, 2); // blocks 1-2 rewritten: s1 alone keeps the old ones
    const byName = new Map((await volumeUsage(node)).map((row) => [row.name, row]));
    assert.deepEqual(byName.get("v"), {
      name: "v",
      provisionedBytes: 8 * BLOCK,
      usedBytes: 4 * BLOCK,
      snapshotOnlyBytes: 2 * BLOCK,
      sharedBytes: 0,
      snapshots: 1,
    });
    assert.deepEqual(
      [byName.get("c")!.usedBytes, byName.get("c")!.sharedBytes, byName.get("c")!.snapshots],
      [4 * BLOCK, 4 * BLOCK, 0],
    );
    assert.deepEqual((await volumeUsage(node, "c")).map((row) => row.name), ["c"]);
  } finally {
    await node.close();
    await Deno.remove(dir, { recursive: true });
  }
});
