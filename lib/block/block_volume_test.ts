import assert from "node:assert/strict";
import { FencedError, ReadOnlyError, SnapshotNotFoundError, VolumeInUseError } from "../errors.ts";
import { Prng } from "../prng.ts";
import {
  cloneVolume,
  createBlockVolume,
  openBlockFile,
  openSnapshot,
  restoreSnapshot,
} from "./block_volume.ts";
import { testEnv } from "./_test_env.ts";

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("File.readAt() reads back what writeAt() wrote, before and after sync (original TestReadAt)", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 1000);
  const file = await openBlockFile(env, "v", { lease: env.lease });
  await file.writeAt(text("hello, world\n"), 0);
  assert.equal(str(await file.readAt(7, 5)), "world");
  await file.sync();
  assert.equal(str(await file.readAt(7, 5)), "world");
  await file.writeAt(text("WORLD"), 7);
  assert.equal(str(await file.readAt(0, 13)), "hello, WORLD\n");
  await file.close();
});

Deno.test("File.read() and seek() move the offset; seek() returns the new offset", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 100);
  const file = await openBlockFile(env, "v", { lease: env.lease });
  await file.write(text("hello, world"));
  assert.equal(file.seek(0), 0);
  assert.equal(str(await file.read(5)), "hello");
  assert.equal(str(await file.readAt(7, 5)), "world", "readAt does not move the offset");
  assert.equal(str(await file.read(2)), ", ");
  assert.equal(file.seek(2, "current"), 9);
  assert.equal(file.seek(-10, "end"), 90);
  assert.throws(() => file.seek(101), RangeError);
  await file.close();
});

Deno.test("File.writeAt() spanning head, whole blocks and tail after a sync (original TestWriteAtBulk)", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 4096);
  const file = await openBlockFile(env, "v", { lease: env.lease });
  await file.writeAt(text("hello, world\n"), 0);
  await file.sync();
  const data = new Prng(3).fill(new Uint8Array(549));
  await file.writeAt(data, 7);
  const back = await file.readAt(0, 7 + 549);
  assert.equal(str(back.subarray(0, 7)), "hello, ");
  assert.deepEqual(back.subarray(7), data);
  await file.close();
});

Deno.test("File rejects ranges outside the volume with RangeError", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 1000);
  const file = await openBlockFile(env, "v", { lease: env.lease });
  await assert.rejects(file.writeAt(new Uint8Array(2), 999), RangeError);
  await assert.rejects(file.readAt(1000, 1), RangeError);
  await assert.rejects(file.readAt(-1, 1), RangeError);
  await assert.rejects(file.truncate(1001), RangeError);
  await file.close();
});

Deno.test("rewrite: 101 unaligned overlapping rewrites across syncs match a reference (original TestRewrite)", async () => {
  const env = await testEnv();
  const size = 25_600; // 100 blocks of 256 bytes
  await createBlockVolume(env.metadata, "v", size);
  const prng = new Prng(42);
  const reference = prng.fill(new Uint8Array(size));
  let file = await openBlockFile(env, "v", { lease: env.lease });
  await file.writeAt(reference, 0);
  await file.close();
  file = await openBlockFile(env, "v", { lease: env.lease });
  for (let i = 0; i <= 100; i++) {
    const offset = (i * 97 + prng.nextInt(300)) % size;
    const patch = prng.fill(new Uint8Array(Math.min(size - offset, 1 + prng.nextInt(3000))));
    reference.set(patch, offset);
    await file.writeAt(patch, offset);
    if (i % 3 === 0) await file.sync();
  }
  await file.close();
  const reader = await openBlockFile(env, "v", { readOnly: true });
  assert.deepEqual(await reader.readAt(0, size), reference);
});

Deno.test("load and dump: a new reader sees the synced data (original TestLoadAndDump)", async () => {
  const env = await testEnv({ blockSpec: "crc,rep=2,base" });
  const data = new Prng(5).fill(new Uint8Array(25_600));
  await createBlockVolume(env.metadata, "v", data.length);
  const writer = await openBlockFile(env, "v", { lease: env.lease });
  await writer.writeAt(data, 0);
  await writer.close();
  const other = await env.client();
  const reader = await openBlockFile(other, "v", { readOnly: true });
  assert.deepEqual(await reader.readAt(0, data.length), data);
  await assert.rejects(reader.writeAt(new Uint8Array(1), 0), ReadOnlyError);
});

Deno.test("lock: a second writer gets VolumeInUseError; close releases the lock", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 1000);
  const first = await openBlockFile(env, "v", { lease: env.lease });
  const other = await env.client();
  await assert.rejects(openBlockFile(other, "v", { lease: other.lease }), VolumeInUseError);
  assert.equal(await env.metadata.lockStatus((await env.metadata.getVolume("v")).id), "in-use");
  await first.close();
  const second = await openBlockFile(other, "v", { lease: other.lease });
  await second.close();
});

Deno.test("fencing: a writer whose lease lapsed cannot commit, and refuses writes after", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 1000);
  const stale = await openBlockFile(env, "v", { lease: env.lease });
  await stale.writeAt(text("old"), 0);
  env.clock.advance(31_000); // the lease lapses (for example behind a partition)
  const other = await env.client();
  const fresh = await openBlockFile(other, "v", { lease: other.lease });
  await fresh.writeAt(text("new"), 0);
  await fresh.sync();
  await assert.rejects(stale.sync(), FencedError);
  await assert.rejects(stale.writeAt(text("x"), 0), FencedError);
  const reader = await openBlockFile(env, "v", { readOnly: true });
  assert.equal(str(await reader.readAt(0, 3)), "new");
  await fresh.close();
});

Deno.test("snapshots: save, open read-only, restore (refused while in use), delete", async () => {
  const env = await testEnv();
  const volume = await createBlockVolume(env.metadata, "v", 1000);
  let file = await openBlockFile(env, "v", { lease: env.lease });
  await file.writeAt(text("version one"), 0);
  await file.sync();
  await env.metadata.saveSnapshot(volume.id, "s1");
  await file.writeAt(text("version TWO"), 0);
  await file.sync();
  const snap = await openSnapshot(env, "v", "s1");
  assert.equal(str(await snap.readAt(0, 11)), "version one");
  assert.equal(str(await file.readAt(0, 11)), "version TWO");
  const other = await env.client();
  await assert.rejects(restoreSnapshot(other.metadata, "v", "s1", other.lease), VolumeInUseError);
  await file.close();
  await restoreSnapshot(other.metadata, "v", "s1", other.lease);
  file = await openBlockFile(env, "v", { lease: env.lease });
  assert.equal(str(await file.readAt(0, 11)), "version one");
  await file.close();
  await assert.rejects(openSnapshot(env, "v", "nope"), SnapshotNotFoundError);
});

Deno.test("CRC corruption is detected: an error, never wrong bytes", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 1000);
  const file = await openBlockFile(env, "v", { lease: env.lease });
  await file.writeAt(new Uint8Array(1000).fill(7), 0);
  await file.close();
  const dataRef = env.store.blockRefs().find((ref) => ref.type === 0)!;
  env.store.corruptForTest(dataRef, 3);
  const reader = await openBlockFile(env, "v", { readOnly: true });
  const results = await Promise.allSettled(
    [0, 256, 512, 768].map((offset) => reader.readAt(offset, 232)),
  );
  const failed = results.filter((r) => r.status === "rejected");
  assert.equal(failed.length, 1, "exactly the corrupted block fails");
  for (const r of results) {
    if (r.status === "fulfilled") assert.ok(r.value.every((b) => b === 7));
  }
});

Deno.test("File: concurrent writes to one block are all applied", async () => {
  const env = await testEnv({ blockSizeBytes: 4096 });
  await createBlockVolume(env.metadata, "v", 16384);
  const file = await openBlockFile(env, "v", { lease: env.lease });
  await file.sync();
  await Promise.all(
    Array.from({ length: 64 }, (_, i) => file.writeAt(new Uint8Array(64).fill(i + 1), i * 64)),
  );
  const back = await file.readAt(0, 4096);
  for (let i = 0; i < 64; i++) assert.equal(back[i * 64], i + 1, `write ${i}`);
  await file.close();
});

Deno.test("File.zero() reads back zeros for whole and partial blocks", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 2000);
  const file = await openBlockFile(env, "v", { lease: env.lease });
  await file.writeAt(new Uint8Array(2000).fill(9), 0);
  await file.sync();
  await file.zero(100, 1000);
  const back = await file.readAt(0, 2000);
  assert.ok(back.subarray(100, 1100).every((b) => b === 0));
  assert.ok(back.subarray(0, 100).every((b) => b === 9));
  assert.ok(back.subarray(1100).every((b) => b === 9));
  await file.close();
});

Deno.test("a grown volume: its head takes the new size with sparse blocks, snapshots keep theirs", async () => {
  // 256-byte blocks: 1000 bytes end inside block 3, whose tail must read as zeros once grown.
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 1000);
  let file = await openBlockFile(env, "v", { lease: env.lease });
  const before = new Prng(5).fill(new Uint8Array(1000));
  await file.writeAt(before, 0);
  await file.close();
  await env.metadata.saveSnapshot((await env.metadata.getVolume("v")).id, "small");
  await env.metadata.resizeVolume("v", 3000);

  // A reader sees the new size before any writer has recorded it in an INode.
  const reader = await openBlockFile(env, "v", { readOnly: true });
  assert.equal(reader.sizeBytes, 3000);
  assert.deepEqual(await reader.readAt(0, 1000), before);
  assert.deepEqual(await reader.readAt(1000, 2000), new Uint8Array(2000));
  await reader.close();

  file = await openBlockFile(env, "v", { lease: env.lease });
  assert.equal(file.sizeBytes, 3000);
  const tail = new Prng(6).fill(new Uint8Array(500));
  await file.writeAt(tail, 2500);
  await file.close();
  file = await openBlockFile(env, "v", { readOnly: true });
  assert.deepEqual(await file.readAt(0, 1000), before);
  assert.deepEqual(await file.readAt(1000, 1500), new Uint8Array(1500));
  assert.deepEqual(await file.readAt(2500, 500), tail);
  await file.close();

  const snapshot = await openSnapshot(env, "v", "small");
  assert.equal(snapshot.sizeBytes, 1000);
  assert.deepEqual(await snapshot.readAt(0, 1000), before);
  await snapshot.close();
});

Deno.test("File.grow(): a writable file grows at once and its next sync records it; a reader keeps its size", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 512);
  const writer = await openBlockFile(env, "v", { lease: env.lease });
  const reader = await openBlockFile(env, "v", { readOnly: true });
  const grown = await env.metadata.resizeVolume("v", 2048);
  await writer.grow({ ...grown, sizeBytes: 256 }); // smaller than the file: nothing changes
  assert.equal(writer.sizeBytes, 512);
  await writer.grow(grown);
  await reader.grow(grown);
  assert.equal(writer.sizeBytes, 2048);
  assert.equal(writer.volume.sizeBytes, 2048);
  assert.equal(reader.sizeBytes, 512, "a reader sees a new size when it reopens");
  await writer.writeAt(text("end"), 2045);
  await writer.sync();
  await assert.rejects(writer.grow({ ...grown, id: grown.id + 1 }), /another volume/);
  await writer.close();
  await reader.close();
  // The sync wrote an INode of the new size.
  const head = await env.metadata.currentINode(grown.id);
  assert.equal((await env.inodes.getINode(head)).sizeBytes, 2048);
});

Deno.test("cloneVolume(): a clone reads as the snapshot; writes to either volume leave the other alone", async () => {
  const env = await testEnv();
  const origin = await createBlockVolume(env.metadata, "gold", 1024); // 4 blocks of 256 bytes
  const image = new Prng(8).fill(new Uint8Array(1024));
  let file = await openBlockFile(env, "gold", { lease: env.lease });
  await file.writeAt(image, 0);
  await file.close();
  await env.metadata.saveSnapshot(origin.id, "v1");
  const usedBefore = env.store.usedBlocks();
  const clone = await cloneVolume(env, "gold", "v1", "vm", env.lease);
  assert.equal(clone.sizeBytes, 1024);
  assert.ok(env.store.usedBlocks() - usedBefore <= 1, "only the clone's INode is written");

  file = await openBlockFile(env, "vm", { lease: env.lease });
  assert.deepEqual(await file.readAt(0, 1024), image);
  await file.writeAt(text("clone"), 10);
  await file.close();
  file = await openBlockFile(env, "gold", { lease: env.lease });
  assert.deepEqual(await file.readAt(0, 1024), image, "the origin did not change");
  await file.writeAt(text("origin"), 300);
  await file.close();

  const expected = image.slice();
  expected.set(text("clone"), 10);
  const reader = await openBlockFile(env, "vm", { readOnly: true });
  assert.deepEqual(
    await reader.readAt(0, 1024),
    expected,
    "the clone did not see the origin's write",
  );
  await reader.close();
  const snapshot = await openSnapshot(env, "gold", "v1");
  assert.deepEqual(await snapshot.readAt(0, 1024), image);
  await snapshot.close();

  await assert.rejects(cloneVolume(env, "gold", "nope", "vm2", env.lease), SnapshotNotFoundError);
  await assert.rejects(cloneVolume(env, "gold", "v1", "vm", env.lease), /already exists/);
  // A snapshot of a volume never written clones into an empty volume.
  const empty = await createBlockVolume(env.metadata, "empty", 512);
  await env.metadata.saveSnapshot(empty.id, "blank");
  await cloneVolume(env, "empty", "blank", "blank-copy", env.lease);
  const blank = await openBlockFile(env, "blank-copy", { readOnly: true });
  assert.deepEqual(await blank.readAt(0, 512), new Uint8Array(512));
  await blank.close();
});
