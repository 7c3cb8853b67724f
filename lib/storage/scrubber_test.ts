import assert from "node:assert/strict";
import { ManualClock } from "../clock.ts";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { BlockCorruptError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { BlockRange, BlockRead } from "./block_store.ts";
import { MemoryBlockStore } from "./memory_block_store.ts";
import {
  describeRef,
  SCRUB_BATCH_BYTES,
  SCRUB_RECHECK_DELAY_MS,
  SCRUB_REST_MS,
  Scrubber,
} from "./scrubber.ts";

const BLOCK = 4096;

/** A store of `count` data blocks of volume 1, INode 2, indices 0.., and a scrubber over it. */
async function setup(
  count: number,
  store = new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 1024 }),
) {
  const refs = Array.from(
    { length: count },
    (_, index) => new BlockRef(1, BlockType.data, 2, index),
  );
  for (const ref of refs) await store.writeBlock(ref, new Uint8Array(BLOCK).fill(ref.index + 1));
  const clock = new ManualClock(1_700_000_000_000);
  const logs: string[] = [];
  const logger: Logger = { log: (level, message) => logs.push(`${level} ${message}`) };
  const scrubber = new Scrubber({ store, clock, logger, bytesPerSecond: 1024 * 1024 });
  return { store, refs, clock, logs, scrubber };
}

/** Resolves `promise`, moving `clock` on while it waits for a recheck. */
async function settle<T>(promise: Promise<T>, clock: ManualClock): Promise<T> {
  let done = false;
  promise.finally(() => done = true).catch(() => {});
  while (!done) {
    await new Promise((resolve) => setTimeout(resolve, 0));
    if (!done) clock.advance(SCRUB_RECHECK_DELAY_MS);
  }
  return await promise;
}

Deno.test("Scrubber: a pass reads every block in batches of SCRUB_BATCH_BYTES", async () => {
  const count = SCRUB_BATCH_BYTES / BLOCK + 10;
  const { scrubber, clock } = await setup(
    count,
    new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 2048 }),
  );
  const first = await scrubber.batch();
  assert.deepEqual(first, {
    checkedBlocks: SCRUB_BATCH_BYTES / BLOCK,
    corruptBlocks: 0,
    repairedBlocks: 0,
    failedBlocks: 0,
    bytes: SCRUB_BATCH_BYTES,
    passDone: false,
  });
  assert.equal(scrubber.status().passDoneBlocks, SCRUB_BATCH_BYTES / BLOCK);
  clock.advance(5);
  const second = await scrubber.batch();
  assert.equal(second.checkedBlocks, 10);
  assert.equal(second.passDone, true);
  const status = scrubber.status();
  assert.equal(status.passes, 1);
  assert.equal(status.checkedBlocks, count);
  assert.equal(status.bytes, count * BLOCK);
  assert.equal(status.lastPassFinishMs, 1_700_000_000_005);
  assert.deepEqual(status.recentCorrupt, []);
});

Deno.test("Scrubber: a corrupt block is found, named in the log and counted; the store is left alone", async () => {
  const { scrubber, store, refs, logs, clock } = await setup(5);
  store.corruptForTest(refs[3]!, 100);
  const report = await settle(scrubber.batch(), clock);
  assert.equal(report.corruptBlocks, 1);
  assert.equal(report.checkedBlocks, 4);
  assert.equal(report.passDone, true);
  const status = scrubber.status();
  assert.equal(status.corruptBlocks, 1);
  assert.deepEqual(status.recentCorrupt, ["block 3 of INode 2 of volume id 1"]);
  assert.equal(logs.filter((line) => line.startsWith("error")).length, 1);
  assert.match(logs.join("\n"), /block 3 of INode 2 of volume id 1 is corrupt/);
  await assert.rejects(
    store.readBlock(refs[3]!),
    BlockCorruptError,
    "still refused, not rewritten",
  );
  // Found again by the next pass.
  const totals = await settle(scrubber.pass(), clock);
  assert.deepEqual([totals.passes, totals.corruptBlocks, totals.checkedBlocks], [2, 2, 8]);
});

Deno.test("Scrubber: with a repair, a corrupt block is rewritten from a good copy; without a copy it stays", async () => {
  const { store, refs, clock, logs } = await setup(4);
  const good = await store.readBlock(refs[0]!);
  store.corruptForTest(refs[0]!, 7);
  store.corruptForTest(refs[2]!, 7);
  const asked: string[] = [];
  const scrubber = new Scrubber({
    store,
    clock,
    logger: { log: (level, message) => logs.push(`${level} ${message}`) },
    repair: async (ref) => {
      asked.push(ref.key());
      if (ref.index !== 0) return null; // no peer holds a good copy of block 2
      await store.writeBlock(ref, good.data);
      return "peer-b";
    },
  });
  const report = await settle(scrubber.batch(), clock);
  assert.deepEqual(
    [report.checkedBlocks, report.corruptBlocks, report.repairedBlocks],
    [2, 2, 1],
  );
  assert.deepEqual(asked, [refs[0]!.key(), refs[2]!.key()]);
  assert.deepEqual((await store.readBlock(refs[0]!)).data, good.data);
  await assert.rejects(store.readBlock(refs[2]!), BlockCorruptError);
  const status = scrubber.status();
  assert.equal(status.repairedBlocks, 1);
  assert.deepEqual(status.recentCorrupt, ["block 2 of INode 2 of volume id 1"]);
  assert.match(
    logs.join("\n"),
    /^warn scrub: block 0 .* is corrupt; rewrote it from the copy of peer-b$/m,
  );
  assert.match(logs.join("\n"), /^error scrub: block 2 .*\(no peer had a good copy;/m);
});

Deno.test("Scrubber: a block that fails once and then reads intact is not corrupt; deleted blocks are skipped", async () => {
  class FlakyStore extends MemoryBlockStore {
    failures = 1;
    override readBlock(ref: BlockRef, range?: BlockRange): Promise<BlockRead> {
      if (ref.index === 1 && this.failures-- > 0) {
        return Promise.reject(new BlockCorruptError("torn for a moment"));
      }
      return super.readBlock(ref, range);
    }
  }
  const store = new FlakyStore({ blockSizeBytes: BLOCK, numBlocks: 64 });
  const { scrubber, refs, clock, logs } = await setup(4, store);
  const batch = scrubber.batch();
  await store.deleteBlock(refs[2]!); // after the pass's snapshot of refs
  const report = await settle(batch, clock);
  assert.deepEqual(
    [report.checkedBlocks, report.corruptBlocks, report.bytes],
    [3, 0, 3 * BLOCK],
  );
  assert.deepEqual(logs, []);
});

Deno.test("Scrubber.run(): paces batches to the rate, rests between passes, stops", async () => {
  // 1,100 blocks of 4 KiB at 1 MiB/s: a batch of 4 MiB, a pause of 4 s, then the rest.
  const store = new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 2048 });
  const { scrubber, clock } = await setup(1100, store);
  const tick = () => new Promise((resolve) => setTimeout(resolve, 10));
  const running = scrubber.run();
  await tick();
  assert.deepEqual([scrubber.status().passDoneBlocks, scrubber.status().passes], [1024, 0]);
  clock.advance(3_999);
  await tick();
  assert.equal(scrubber.status().passes, 0, "paced: 4 MiB at 1 MiB/s is 4 s");
  clock.advance(1);
  await tick();
  assert.equal(scrubber.status().passes, 1);
  clock.advance(SCRUB_REST_MS - 1);
  await tick();
  assert.equal(scrubber.status().passDoneBlocks, 1100, "resting after the pass");
  clock.advance(1);
  await tick();
  assert.equal(scrubber.status().passDoneBlocks, 1024, "the next pass began");
  scrubber.stop();
  await running;
  assert.throws(
    () => new Scrubber({ store, clock, logger: { log() {} }, bytesPerSecond: 0 }),
    RangeError,
  );
});

Deno.test("describeRef: names data and INode blocks", () => {
  assert.equal(
    describeRef(new BlockRef(7, BlockType.data, 3, 9)),
    "block 9 of INode 3 of volume id 7",
  );
  assert.equal(
    describeRef(new BlockRef(7, BlockType.inode, 3, 0)),
    "INode block 0 of INode 3 of volume id 7",
  );
});
