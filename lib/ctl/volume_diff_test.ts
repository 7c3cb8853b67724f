import assert from "node:assert/strict";
import { openBlockFile, openSnapshot } from "../block/block_volume.ts";
import { TorusError } from "../errors.ts";
import { LocalNode } from "../node/local_node.ts";
import { Prng } from "../prng.ts";
import { applyDiff, exportDiff } from "./volume_diff.ts";

const BLOCK = 64 * 1024;
const MiB = 1024 * 1024;

async function withNode(body: (node: LocalNode) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "torus-diff-" });
  const node = await LocalNode.open({ dataDir: dir, create: true });
  try {
    await node.initialize({ blockSizeBytes: BLOCK, defaultBlockSpec: "crc,base" });
    await node.volumes({ bytes: 256 * BLOCK });
    await body(node);
  } finally {
    await node.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** `exportDiff` into memory. */
async function diffOf(node: LocalNode, to: string, from?: string) {
  const chunks: Uint8Array[] = [];
  const writer = new WritableStream<Uint8Array>({
    write: (chunk) => void chunks.push(chunk.slice()),
  })
    .getWriter();
  const summary = await exportDiff(node, to, from, writer);
  const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  assert.equal(bytes.length, summary.streamBytes);
  return { summary, bytes };
}

/** A reader of `bytes` in chunks of uneven sizes, as a pipe would deliver them. */
function chunked(bytes: Uint8Array, seed = 1): ReadableStreamDefaultReader<Uint8Array> {
  const prng = new Prng(seed);
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < bytes.length;) {
    const length = Math.min(bytes.length - at, 1 + Math.floor(prng.nextFloat() * 70_000));
    chunks.push(bytes.slice(at, at + length));
    at += length;
  }
  return ReadableStream.from(chunks).getReader();
}

async function write(
  node: LocalNode,
  name: string,
  edit: (file: Awaited<ReturnType<typeof openBlockFile>>) => Promise<void>,
) {
  const file = await openBlockFile(await node.volumes(), name, {
    lease: (await node.lease()).lease,
  });
  await edit(file);
  await file.close();
}

async function contents(node: LocalNode, name: string, snapshot?: string): Promise<Uint8Array> {
  const context = await node.volumes();
  const file = snapshot === undefined
    ? await openBlockFile(context, name, { readOnly: true })
    : await openSnapshot(context, name, snapshot);
  const bytes = await file.readAt(0, file.sizeBytes);
  await file.close();
  return bytes;
}

Deno.test("block diff and apply-diff: a full copy, then only what changed, trims and growth included", async () => {
  await withNode(async (node) => {
    const src = await node.metadata.createVolume("src", MiB);
    const prng = new Prng(3);
    await write(node, "src", (file) => file.writeAt(prng.fill(new Uint8Array(MiB - 3 * BLOCK)), 0));
    await node.metadata.saveSnapshot(src.id, "s1");

    const full = await diffOf(node, "src@s1");
    assert.deepEqual(
      [full.summary.dataBlocks, full.summary.zeroBlocks, full.summary.unchangedBlocks],
      [13, 0, 3],
      "13 written blocks, the 3 sparse ones left out",
    );
    const applied = await applyDiff(node, chunked(full.bytes), "dst");
    assert.equal(applied.to, "s1");
    assert.deepEqual(await contents(node, "dst"), await contents(node, "src", "s1"));

    // Change one block, trim another, grow the volume and write at its new end.
    await write(node, "src", async (file) => {
      await file.writeAt(new Uint8Array([1, 2, 3]), 3 * BLOCK + 10);
      await file.zero(5 * BLOCK, BLOCK);
    });
    await node.metadata.resizeVolume("src", MiB + BLOCK);
    await write(node, "src", (file) => file.writeAt(new Uint8Array(100).fill(9), MiB + 50));
    await node.metadata.saveSnapshot(src.id, "s2");
    // Written after s2: not part of the diff.
    await write(node, "src", (file) => file.writeAt(new Uint8Array([7]), 0));

    const increment = await diffOf(node, "src@s2", "s1");
    assert.deepEqual(
      [
        increment.summary.dataBlocks,
        increment.summary.zeroBlocks,
        increment.summary.unchangedBlocks,
      ],
      [2, 1, 14],
    );
    assert.ok(increment.bytes.length < 3 * BLOCK, `${increment.bytes.length} bytes`);
    const second = await applyDiff(node, chunked(increment.bytes, 2), "dst");
    assert.deepEqual([second.from, second.to, second.sizeBytes], ["s1", "s2", MiB + BLOCK]);
    assert.deepEqual(await contents(node, "dst"), await contents(node, "src", "s2"));
    const snapshots = (await node.metadata.listSnapshots((await node.metadata.getVolume("dst")).id))
      .map((s) => s.name);
    assert.deepEqual(snapshots, ["s1", "s2"]);
  });
});

Deno.test("apply-diff refuses what does not fit and puts the volume back after a damaged stream", async () => {
  await withNode(async (node) => {
    const src = await node.metadata.createVolume("src", 8 * BLOCK);
    await write(
      node,
      "src",
      (file) => file.writeAt(new Prng(4).fill(new Uint8Array(8 * BLOCK)), 0),
    );
    await node.metadata.saveSnapshot(src.id, "s1");
    await write(node, "src", (file) => file.writeAt(new Uint8Array(BLOCK).fill(1), 2 * BLOCK));
    await node.metadata.saveSnapshot(src.id, "s2");
    const full = (await diffOf(node, "src@s1")).bytes;
    const increment = (await diffOf(node, "src@s2", "s1")).bytes;

    // Not a diff; truncated; from nothing onto an existing volume; newer FROM than TO.
    await assert.rejects(applyDiff(node, chunked(new Uint8Array(64)), "x"), /not a Torus diff/);
    await assert.rejects(applyDiff(node, chunked(full.subarray(0, 5000)), "x"), /truncated/);
    assert.deepEqual((await node.metadata.listVolumes()).map((v) => v.name), ["src"], "x removed");
    await assert.rejects(applyDiff(node, chunked(full), "src"), TorusError);
    await assert.rejects(diffOf(node, "src@s1", "s2"), RangeError);
    await assert.rejects(diffOf(node, "src", "s1"), /VOLUME@SNAPSHOT/);

    await applyDiff(node, chunked(full), "dst");
    const before = await contents(node, "dst");
    // A flipped data byte fails the CRC at the end: the records already written are undone.
    const damaged = increment.slice();
    damaged[damaged.length - 100] = damaged[damaged.length - 100]! ^ 0xff;
    await assert.rejects(applyDiff(node, chunked(damaged), "dst"), /CRC-32/);
    assert.deepEqual(await contents(node, "dst"), before);
    // The increment twice: the second time the volume is no longer at s1.
    await applyDiff(node, chunked(increment), "dst");
    await assert.rejects(applyDiff(node, chunked(increment), "dst"), /changed since snapshot "s1"/);
    assert.deepEqual(await contents(node, "dst"), await contents(node, "src", "s2"));
  });
});
