import assert from "node:assert/strict";
import type { INodeRef } from "../core/block_ref.ts";
import type { MetadataService } from "../metadata/metadata_service.ts";
import { OutOfSpaceError } from "../errors.ts";
import { cloneVolume, createBlockVolume, openBlockFile } from "./block_volume.ts";
import { collectGarbage } from "./gc.ts";
import { testEnv } from "./_test_env.ts";

async function writeAndSync(env: Awaited<ReturnType<typeof testEnv>>, name: string, fill: number) {
  const file = await openBlockFile(env, name, { lease: env.lease });
  await file.writeAt(new Uint8Array(file.sizeBytes).fill(fill), 0);
  await file.close();
}

Deno.test("GC deletes only blocks no current INode or snapshot references", async () => {
  const env = await testEnv();
  const volume = await createBlockVolume(env.metadata, "v", 1024); // 4 blocks
  await writeAndSync(env, "v", 1);
  await env.metadata.saveSnapshot(volume.id, "keep");
  await writeAndSync(env, "v", 2);
  await writeAndSync(env, "v", 3);
  const before = env.store.usedBlocks();
  const result = await collectGarbage(env);
  assert.ok(result.ran);
  // Live: current (4 data + 1 INode) and snapshot (4 data + 1 INode).
  assert.equal(env.store.usedBlocks(), 10, `had ${before}`);
  assert.equal(result.deletedBlocks, before - 10);
  const reader = await openBlockFile(env, "v", { readOnly: true });
  assert.ok((await reader.readAt(0, 1024)).every((b) => b === 3));
  await env.metadata.deleteSnapshot(volume.id, "keep");
  await collectGarbage(env);
  assert.equal(env.store.usedBlocks(), 5);
});

Deno.test("GC frees a deleted volume's blocks and leaves its neighbours alone", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "a", 512);
  await createBlockVolume(env.metadata, "b", 512);
  await writeAndSync(env, "a", 1);
  await writeAndSync(env, "b", 2);
  await env.metadata.deleteVolume("a");
  await collectGarbage(env);
  assert.equal(env.store.usedBlocks(), 3, "b's 2 data blocks and its INode");
  const reader = await openBlockFile(env, "b", { readOnly: true });
  assert.ok((await reader.readAt(0, 512)).every((b) => b === 2));
});

Deno.test("GC keeps the blocks of a write session in flight", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 512);
  const file = await openBlockFile(env, "v", { lease: env.lease });
  await file.writeAt(new Uint8Array(512).fill(4), 0);
  await env.store.flush();
  await collectGarbage(env);
  await file.sync();
  assert.ok((await file.readAt(0, 512)).every((b) => b === 4));
  await file.close();
});

Deno.test("GC fails closed: a metadata error deletes nothing", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 512);
  await writeAndSync(env, "v", 1);
  await writeAndSync(env, "v", 2);
  const used = env.store.usedBlocks();
  const failing = (method: keyof MetadataService) =>
    new Proxy(env.metadata, {
      get(target, property, receiver) {
        if (property === method) return () => Promise.reject(new Error("etcd is down"));
        const value = Reflect.get(target, property, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  for (const method of ["listVolumes", "currentINode", "listSnapshots"] as const) {
    const result = await collectGarbage({ ...env, metadata: failing(method) });
    assert.equal(env.store.usedBlocks(), used, `${method} failing must delete nothing`);
    if (method === "listVolumes") assert.equal(result.ran, false);
  }
  // An unreadable INode keeps its volume's blocks too.
  const broken = new Proxy(env.inodes, {
    get(target, property, receiver) {
      if (property === "getINode") return (_ref: INodeRef) => Promise.reject(new Error("timeout"));
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  await collectGarbage({ ...env, inodes: broken });
  assert.equal(env.store.usedBlocks(), used);
  await collectGarbage(env);
  assert.ok(env.store.usedBlocks() < used);
});

Deno.test("a write that finds the store full commits, collects garbage and succeeds", async () => {
  // 4 data blocks + 1 INode live; rewriting all 4 in a new session needs 4 more.
  for (const reclaim of [false, true]) {
    const env = await testEnv({ numBlocks: 7 });
    await createBlockVolume(env.metadata, "v", 1024);
    await writeAndSync(env, "v", 1);
    const context = reclaim
      ? { ...env, reclaimSpace: async () => void await collectGarbage(env) }
      : env;
    const file = await openBlockFile(context, "v", { lease: env.lease });
    const rewrite = async () => {
      for (let round = 3; round < 6; round++) {
        for (let offset = 0; offset < 1024; offset += 256) {
          await file.writeAt(new Uint8Array(256).fill(round), offset);
        }
      }
    };
    if (!reclaim) {
      await assert.rejects(rewrite(), OutOfSpaceError);
      continue;
    }
    await rewrite();
    await file.close();
    const reader = await openBlockFile(env, "v", { readOnly: true });
    assert.ok((await reader.readAt(0, 1024)).every((b) => b === 5));
  }
});

Deno.test("concurrent writes near a full store leave room for the INode: sync never fails", async () => {
  // 64 blocks of 256 bytes; rewriting them all, 32 writes of 4 blocks at a
  // time, again and again: without a reservation the writes in flight all see
  // room, take the INode's blocks together, and the commit finds none.
  const env = await testEnv({ numBlocks: 140 });
  await createBlockVolume(env.metadata, "v", 64 * 256);
  await writeAndSync(env, "v", 1);
  const file = await openBlockFile(
    { ...env, reclaimSpace: async () => void await collectGarbage(env) },
    "v",
    { lease: env.lease },
  );
  for (let round = 2; round < 12; round++) {
    await Promise.all(
      Array.from(
        { length: 16 },
        (_, i) => file.writeAt(new Uint8Array(1024).fill(round), ((i * 5) % 16) * 1024),
      ),
    );
  }
  await file.sync();
  await file.close();
  const reader = await openBlockFile(env, "v", { readOnly: true });
  assert.ok((await reader.readAt(0, 64 * 256)).every((b) => b === 11));
});

Deno.test("GC frees the blocks of a session whose writer died without committing", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 1024);
  await writeAndSync(env, "v", 1);
  const live = env.store.usedBlocks();
  const dead = await openBlockFile(env, "v", { lease: env.lease });
  await dead.writeAt(new Uint8Array(1024).fill(2), 0); // never synced
  assert.ok(env.store.usedBlocks() > live);
  await collectGarbage(env);
  assert.ok(env.store.usedBlocks() > live, "kept while its writer holds the lock");
  env.clock.advance(31_000); // the writer's lease lapses: its lock is gone
  await collectGarbage(env);
  assert.equal(env.store.usedBlocks(), live, "the abandoned session is collected");
  const reader = await openBlockFile(env, "v", { readOnly: true });
  assert.ok((await reader.readAt(0, 1024)).every((b) => b === 1));
});

Deno.test("GC keeps a session that commits while marking is under way", async () => {
  const env = await testEnv();
  await createBlockVolume(env.metadata, "v", 1024);
  await writeAndSync(env, "v", 1);
  const file = await openBlockFile(env, "v", { lease: env.lease });
  await file.writeAt(new Uint8Array(1024).fill(2), 0);
  // The writer syncs and leaves after marking read the current INode but
  // before it reads the INode counter and the lock.
  const racing = new Proxy(env.metadata, {
    get(target, property, receiver) {
      if (property === "inodeCounter") {
        return async (volumeId: number) => {
          await file.close();
          return await target.inodeCounter(volumeId);
        };
      }
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  await collectGarbage({ ...env, metadata: racing });
  const reader = await openBlockFile(env, "v", { readOnly: true });
  assert.ok((await reader.readAt(0, 1024)).every((b) => b === 2), "committed data survives");
  await collectGarbage(env);
  assert.ok((await reader.readAt(0, 1024)).every((b) => b === 2));
});

Deno.test("GC keeps a clone's blocks after its source overwrote them, dropped the snapshot and was deleted", async () => {
  const env = await testEnv();
  const source = await createBlockVolume(env.metadata, "src", 1024); // 4 blocks
  await writeAndSync(env, "src", 1);
  await env.metadata.saveSnapshot(source.id, "gold");
  await cloneVolume(env, "src", "gold", "vm1", env.lease);
  await writeAndSync(env, "src", 2); // the source's current INode no longer references them
  await env.metadata.deleteSnapshot(source.id, "gold");
  await collectGarbage(env);
  const read = async (name: string) => {
    const file = await openBlockFile(env, name, { readOnly: true });
    const bytes = await file.readAt(0, 1024);
    await file.close();
    return bytes;
  };
  assert.ok((await read("vm1")).every((b) => b === 1), "the clone still reads the snapshot");
  await env.metadata.deleteVolume("src");
  const result = await collectGarbage(env);
  // The source's own blocks (4 data, its INodes) go; the 4 the clone shares stay.
  assert.ok(result.deletedBlocks >= 5, `deleted ${result.deletedBlocks}`);
  assert.ok((await read("vm1")).every((b) => b === 1));
  // The clone rewrites them: now nothing references the old ones.
  await writeAndSync(env, "vm1", 3);
  await collectGarbage(env);
  assert.ok((await read("vm1")).every((b) => b === 3));
  assert.equal(env.store.usedBlocks(), 5, "4 data blocks and an INode block of vm1");
});

Deno.test("GC with a volume it cannot mark keeps every data block a clone might reference", async () => {
  const env = await testEnv();
  const source = await createBlockVolume(env.metadata, "src", 1024);
  await writeAndSync(env, "src", 1);
  await env.metadata.saveSnapshot(source.id, "gold");
  const clone = await cloneVolume(env, "src", "gold", "vm1", env.lease);
  await env.metadata.deleteSnapshot(source.id, "gold");
  await env.metadata.deleteVolume("src");
  const used = env.store.usedBlocks();
  // The clone's INode cannot be read: the source's data blocks may be its, so they stay.
  const broken = new Proxy(env.inodes, {
    get(target, property, receiver) {
      if (property === "getINode") {
        return (ref: INodeRef) =>
          ref.volume === clone.id ? Promise.reject(new Error("timeout")) : target.getINode(ref);
      }
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const result = await collectGarbage({ ...env, inodes: broken });
  assert.ok(result.deletedBlocks <= 1, "at most the source's INode block");
  assert.ok(env.store.usedBlocks() >= used - 1);
  const file = await openBlockFile(env, "vm1", { readOnly: true });
  assert.ok((await file.readAt(0, 1024)).every((b) => b === 1));
  await file.close();
});
