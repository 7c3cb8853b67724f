import assert from "node:assert/strict";
import { createBlockVolume, openBlockFile } from "../block/block_volume.ts";
import { collectGarbage } from "../block/gc.ts";
import { testEnv } from "../block/_test_env.ts";

type Env = Awaited<ReturnType<typeof testEnv>>;

/** Blocks large enough for an INode of these volumes to take one. */
const BLOCK = 4096;

async function writeAndClose(env: Env, name: string, blocks: number, fill: number) {
  const file = await openBlockFile(env, name, { lease: env.lease });
  await file.writeAt(new Uint8Array(blocks * BLOCK).fill(fill), 0);
  await file.close();
}

/** A reclaimSpace that runs the real GC and counts its calls. */
function reclaimSpy(env: Env) {
  const spy = {
    calls: 0,
    reclaimSpace: async () => {
      spy.calls++;
      await collectGarbage(env);
    },
  };
  return spy;
}

Deno.test("closing collects what the file's commits replaced, and only then", async () => {
  const env = await testEnv({ blockSizeBytes: BLOCK, numBlocks: 1000 });
  await createBlockVolume(env.metadata, "v", 8 * BLOCK);
  await writeAndClose(env, "v", 8, 1);
  const live = env.store.usedBlocks();
  const spy = reclaimSpy(env);
  const context = { ...env, reclaimSpace: spy.reclaimSpace };
  // Opened and closed without a write, or read-only: nothing to collect.
  await (await openBlockFile(context, "v", { lease: env.lease })).close();
  await (await openBlockFile(context, "v", { readOnly: true })).close();
  assert.equal(spy.calls, 0);
  const file = await openBlockFile(context, "v", { lease: env.lease });
  await file.writeAt(new Uint8Array(100).fill(2), 3 * BLOCK + 10); // copied on write
  await file.sync();
  await file.writeAt(new Uint8Array(100).fill(3), 5 * BLOCK + 10);
  assert.ok(env.store.usedBlocks() > live);
  await file.close();
  assert.equal(spy.calls, 1);
  assert.equal(env.store.usedBlocks(), live, "the replaced blocks and INodes are gone");
  const reader = await openBlockFile(env, "v", { readOnly: true });
  const data = await reader.readAt(0, 8 * BLOCK);
  assert.equal(data[3 * BLOCK + 50], 2);
  assert.equal(data[5 * BLOCK + 50], 3);
  assert.equal(data[0], 1);
});

Deno.test("a failed collection at close does not fail the close, and the data is committed", async () => {
  const env = await testEnv({ blockSizeBytes: BLOCK });
  await createBlockVolume(env.metadata, "v", 4 * BLOCK);
  await writeAndClose(env, "v", 4, 1);
  let calls = 0;
  const file = await openBlockFile(
    {
      ...env,
      reclaimSpace: () => {
        calls++;
        return Promise.reject(new Error("store went away"));
      },
    },
    "v",
    { lease: env.lease },
  );
  await file.writeAt(new Uint8Array(BLOCK).fill(7), 0);
  await file.close();
  assert.equal(calls, 1);
  const reader = await openBlockFile(env, "v", { lease: env.lease });
  assert.equal((await reader.readAt(0, 1))[0], 7, "committed, and the lock released");
  await reader.close();
});
