import assert from "node:assert/strict";
import { createBlockVolume, openBlockFile } from "../block/block_volume.ts";
import { collectGarbage } from "../block/gc.ts";
import { testEnv } from "../block/_test_env.ts";
import type { BlockRef } from "../core/block_ref.ts";
import type { BlockRange, BlockRead } from "../storage/block_store.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";

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

/** A memory store that counts its reads, can refuse to read at once, and can hold a patch's reply. */
class ProbedStore extends MemoryBlockStore {
  reads = 0;
  readsNow = 0;
  refuseNow = false;
  /** readBlockNow() calls to refuse from now on, whatever refuseNow says. */
  refuseNextNow = 0;
  /** Calls of writeBlockRange() and copyBlock(), and of their `Now` forms. */
  writes = 0;
  writesNow = 0;
  refuseWritesNow = false;
  /** While set, writeBlockRange() changes the block, then waits for this before it returns. */
  patchGate: Promise<void> | null = null;
  /** While set, readBlock() waits for this before it reads. */
  readGate: Promise<void> | null = null;

  override async readBlock(ref: BlockRef, range?: BlockRange): Promise<BlockRead> {
    this.reads++;
    if (this.readGate !== null) await this.readGate;
    return await super.readBlock(ref, range);
  }

  override writeBlockRangeNow(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array | null {
    this.writesNow++;
    if (this.refuseWritesNow) return null;
    return super.writeBlockRangeNow(ref, offsetBytes, data, expectDigest);
  }

  override copyBlockNow(
    source: BlockRef,
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array | null {
    this.writesNow++;
    if (this.refuseWritesNow) return null;
    return super.copyBlockNow(source, ref, offsetBytes, data, expectDigest);
  }

  override copyBlock(
    source: BlockRef,
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    this.writes++;
    return super.copyBlock(source, ref, offsetBytes, data, expectDigest);
  }

  override readBlockNow(ref: BlockRef, range: BlockRange, into: Uint8Array): BlockRead | null {
    this.readsNow++;
    if (this.refuseNextNow > 0) {
      this.refuseNextNow--;
      return null;
    }
    return this.refuseNow ? null : super.readBlockNow(ref, range, into);
  }

  override async writeBlockRange(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    this.writes++;
    const crcs = await super.writeBlockRange(ref, offsetBytes, data, expectDigest);
    if (this.patchGate !== null) await this.patchGate;
    return crcs;
  }
}

function probedEnv() {
  const store = new ProbedStore({ blockSizeBytes: BLOCK, numBlocks: 1000 });
  return { store, env: testEnv({ blockSizeBytes: BLOCK, store }) };
}

Deno.test("readAt() serves blocks the store can read at once without waiting, and waits for the others", async () => {
  const { store, env: pending } = probedEnv();
  const env = await pending;
  await createBlockVolume(env.metadata, "v", 4 * BLOCK);
  await writeAndClose(env, "v", 2, 1);
  const file = await openBlockFile(env, "v", { readOnly: true });
  store.reads = store.readsNow = 0;
  const expected = new Uint8Array(4 * BLOCK).fill(1, 0, 2 * BLOCK);
  assert.deepEqual(await file.readAt(0, 4 * BLOCK), expected, "two blocks stored, two sparse");
  assert.deepEqual([store.readsNow, store.reads], [2, 0]);
  store.refuseNow = true;
  assert.deepEqual(await file.readAt(BLOCK - 10, 20), expected.slice(BLOCK - 10, BLOCK + 10));
  assert.deepEqual([store.readsNow, store.reads], [4, 2], "refused at once: read and waited for");
  // Only the pieces that must wait do: block 0 is refused, block 1 read at once.
  store.refuseNow = false;
  store.refuseNextNow = 1;
  assert.deepEqual(await file.readAt(BLOCK - 10, 20), expected.slice(BLOCK - 10, BLOCK + 10));
  assert.deepEqual([store.readsNow, store.reads], [6, 3], "one piece refused and waited for");
  await file.close();
});

Deno.test("readAt() does not read at once a block a write is changing: it waits for the write", async () => {
  const { store, env: pending } = probedEnv();
  const env = await pending;
  await createBlockVolume(env.metadata, "v", 2 * BLOCK);
  const file = await openBlockFile(env, "v", { lease: env.lease });
  await file.writeAt(new Uint8Array(BLOCK).fill(1), 0); // block 0 now belongs to this session
  store.refuseWritesNow = true; // the patch waits at the gate
  let open!: () => void;
  store.patchGate = new Promise((resolve) => open = resolve);
  // Patched in place: the store holds the new sector CRCs, the INode's digest is still the old one.
  const writing = file.writeAt(new Uint8Array(100).fill(2), 10);
  await new Promise((resolve) => setTimeout(resolve, 0));
  let settled = false;
  const reading = file.readAt(0, BLOCK).finally(() => settled = true);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(settled, false, "the read waits for the write that holds the block");
  store.patchGate = null;
  open();
  await writing;
  const expected = new Uint8Array(BLOCK).fill(1);
  expected.fill(2, 10, 110);
  assert.deepEqual(await reading, expected);
  await file.close();
});

Deno.test("writeAt() of part of a block in an open session writes at once; else it waits its turn", async () => {
  const { store, env: pending } = probedEnv();
  const env = await pending;
  await createBlockVolume(env.metadata, "v", 4 * BLOCK);
  await writeAndClose(env, "v", 4, 1);
  const file = await openBlockFile(env, "v", { lease: env.lease });
  const expected = new Uint8Array(4 * BLOCK).fill(1);
  const write = async (fill: number, at: number, length: number) => {
    await file.writeAt(new Uint8Array(length).fill(fill), at);
    expected.fill(fill, at, at + length);
  };
  await write(2, 100, 10); // opens the session: the waiting way
  store.writes = store.writesNow = 0;
  await write(3, BLOCK + 5, 20); // a copy of a committed block
  await write(4, BLOCK + 4000, 200); // two blocks: in place, and a copy of the next
  await write(5, 2 * BLOCK - 10, 20); // the same two, both in place
  assert.deepEqual([store.writesNow, store.writes], [5, 0], "all at once");
  store.refuseWritesNow = true;
  await write(6, 3 * BLOCK + 1, 1);
  assert.deepEqual(
    [store.writesNow, store.writes],
    [6, 1],
    "refused at once: written the waiting way",
  );
  store.refuseWritesNow = false;
  // A read in progress (waiting for the store) holds its block: a write there waits for it.
  store.refuseNow = true;
  let openRead!: () => void;
  store.readGate = new Promise((resolve) => openRead = resolve);
  const reading = file.readAt(0, BLOCK);
  await new Promise((resolve) => setTimeout(resolve, 0));
  let written = false;
  const writing = write(7, 50, 10).then(() => written = true);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(written, false, "the write waits for the read that holds the block");
  store.readGate = null;
  openRead();
  const before = await reading;
  await writing;
  assert.equal(before[55], 1, "the read saw the block as it was before the write");
  store.refuseNow = false;
  assert.deepEqual(await file.readAt(0, 4 * BLOCK), expected);
  await file.close();
  const again = await openBlockFile(env, "v", { readOnly: true });
  assert.deepEqual(await again.readAt(0, 4 * BLOCK), expected, "committed");
  await again.close();
});
