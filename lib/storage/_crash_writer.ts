/**
 * Test fixture of `file_block_store_test.ts`: a process that writes blocks to
 * a {@linkcode FileBlockStore}, flushes, reports what it flushed, then churns
 * unflushed writes, patches, copies and deletes until it is killed.
 *
 * ```
 * deno run -A lib/storage/_crash_writer.ts DIR BLOCK_SIZE NUM_BLOCKS FLUSHED
 * ```
 *
 * Prints `FLUSHED <n>` once blocks `0 .. n-1` (see {@linkcode crashExpected})
 * are durable. Block contents are a function of the block's number, so the
 * test knows every acceptable content of every block.
 *
 * @module
 */
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { Prng } from "../prng.ts";
import { FileBlockStore } from "./file_block_store.ts";

/** Every this many flushed blocks, one is deleted before the flush. */
export const CRASH_DELETE_EVERY = 7;
/**
 * Flushed blocks with `n % CRASH_PATCH_EVERY === 1` are patched in place
 * before the flush; those with `n % CRASH_PATCH_EVERY === 3` are made patched
 * by a copy of a temporary block, which the churn deletes, so that the
 * copies (deltas) are merged into the temporary blocks' slots while the
 * writer may be killed.
 */
export const CRASH_PATCH_EVERY = 4;
/** Unflushed blocks with `n % CRASH_CHURN_COPY_EVERY === 0` are made patched by a copy. */
const CRASH_CHURN_COPY_EVERY = 5;
/** Unflushed blocks with `n % CRASH_CHURN_PATCH_EVERY === 0` are patched. */
export const CRASH_CHURN_PATCH_EVERY = 3;
/** Slots the churn keeps free before each block it writes. */
const CHURN_FREE_SLOTS_MIN = 3;
/** The churn flushes every this many blocks, so the kill lands between or inside flushes. */
const CRASH_CHURN_FLUSH_EVERY = 16;
/** Bytes of a patch written with `writeBlockRange`. */
const PATCH_LENGTH_BYTES = 5000;
/** The writer gives up on its own after this long, should its parent never kill it. */
const CHURN_LIMIT_MS = 60_000;

/** The ref of block number `n`. */
export function crashRef(n: number): BlockRef {
  return new BlockRef(1, BlockType.data, 7, n + 1);
}

/** The temporary block a patched copy of block `n` is made from. */
function crashTempRef(n: number): BlockRef {
  return new BlockRef(1, BlockType.data, 8, n + 1);
}

/**
 * The copy the churn makes of flushed block `n` (made patched by a copy)
 * once its temporary block is deleted: a copy of a delta whose lender is
 * deleted, which brings the lender up to date while block `n` borrows from
 * it. Its bytes are block `n`'s.
 */
export function crashCopyRef(n: number): BlockRef {
  return new BlockRef(1, BlockType.data, 9, n + 1);
}

/** Whether flushed block `n` is flushed patched. */
export function crashFlushedPatched(n: number): boolean {
  return n % CRASH_PATCH_EVERY === 1 || n % CRASH_PATCH_EVERY === 3;
}

/**
 * One patched copy in this many (counted by `n / CRASH_PATCH_EVERY`) then
 * rewrites three quarters of its block with the same bytes, in two steps (a
 * packed delta first moves to a slot of its own as a delta, then grows there):
 * it owns most of its sectors, so its merge copies the lender's remaining
 * sectors into its own slot instead.
 */
const CRASH_OWN_MOST_EVERY = 2;

/** Writes block `n` as patched through a copy of a temporary block, left in place. */
async function copyPatched(store: FileBlockStore, n: number): Promise<void> {
  const blockSizeBytes = store.blockSizeBytes;
  await store.writeBlock(crashTempRef(n), crashWritten(n, blockSizeBytes));
  await store.copyBlock(crashTempRef(n), crashRef(n), ...crashPatch(n, blockSizeBytes));
  if (Math.floor(n / CRASH_PATCH_EVERY) % CRASH_OWN_MOST_EVERY === 0) {
    const patched = crashExpected(n, blockSizeBytes)[1];
    // Under half first (a packed delta moves as a delta), then on to three quarters.
    const step = (blockSizeBytes * 7) / 16;
    await store.writeBlockRange(crashRef(n), 0, patched.subarray(0, step));
    await store.writeBlockRange(
      crashRef(n),
      step,
      patched.subarray(step, (blockSizeBytes * 3) / 4),
    );
  }
}

/** The bytes written for block `n`: a prefix of the block; the rest stays zero. */
export function crashWritten(n: number, blockSizeBytes: number): Uint8Array {
  const length = blockSizeBytes - (n % 5) * 1000;
  return new Prng(n + 1).fill(new Uint8Array(Math.max(1, length)));
}

/** The patch of block `n`: its offset and bytes. */
export function crashPatch(n: number, blockSizeBytes: number): [number, Uint8Array] {
  const offset = (n * 4099) % (blockSizeBytes - PATCH_LENGTH_BYTES);
  return [offset, new Prng(n + 1_000_003).fill(new Uint8Array(PATCH_LENGTH_BYTES))];
}

/** The acceptable whole-block contents of block `n`: as written, and as patched. */
export function crashExpected(n: number, blockSizeBytes: number): [Uint8Array, Uint8Array] {
  const written = new Uint8Array(blockSizeBytes);
  written.set(crashWritten(n, blockSizeBytes));
  const patched = written.slice();
  const [offset, bytes] = crashPatch(n, blockSizeBytes);
  patched.set(bytes, offset);
  return [written, patched];
}

async function main(args: string[]): Promise<void> {
  const [directory, blockText, numText, flushedText] = args;
  if (directory === undefined || flushedText === undefined) {
    throw new TypeError("usage: _crash_writer.ts DIR BLOCK_SIZE NUM_BLOCKS FLUSHED");
  }
  const blockSizeBytes = Number(blockText);
  const flushed = Number(flushedText);
  const store = await FileBlockStore.open({
    directory,
    blockSizeBytes,
    sizeBytes: Number(numText) * blockSizeBytes,
  });
  const temps: number[] = [];
  for (let n = 0; n < flushed; n++) {
    if (n % CRASH_PATCH_EVERY === 3) {
      await copyPatched(store, n);
      temps.push(n);
      continue;
    }
    await store.writeBlock(crashRef(n), crashWritten(n, blockSizeBytes));
    if (n % CRASH_PATCH_EVERY === 1) {
      await store.writeBlockRange(crashRef(n), ...crashPatch(n, blockSizeBytes));
    }
  }
  for (let n = 0; n < flushed; n += CRASH_DELETE_EVERY) await store.deleteBlock(crashRef(n));
  await store.flush();
  console.log(`FLUSHED ${flushed}`);

  // Churn until killed: new blocks, patches, copies, deletes of the flushed
  // temporary blocks and of the oldest churned block when full (so that slots
  // are reused and deltas merged), and a flush now and then.
  const live: number[] = [];
  const deadline = Date.now() + CHURN_LIMIT_MS;
  for (let n = flushed; Date.now() < deadline; n++) {
    const temp = temps.shift();
    if (temp !== undefined) {
      await store.deleteBlock(crashTempRef(temp));
      if (temp % CRASH_DELETE_EVERY !== 0) {
        // Rewrites its first bytes with the same bytes: the copy owns a sector.
        const same = crashExpected(temp, blockSizeBytes)[1].subarray(0, PATCH_LENGTH_BYTES);
        await store.copyBlock(crashRef(temp), crashCopyRef(temp), 0, same);
      }
    }
    // Room for a temporary block, its copy, and the copy's move to a slot of its own.
    while (store.usedBlocks() >= store.numBlocks() - CHURN_FREE_SLOTS_MIN && live.length > 0) {
      await store.deleteBlock(crashRef(live.shift()!));
    }
    live.push(n);
    if (n % CRASH_CHURN_COPY_EVERY === 0) {
      await copyPatched(store, n);
      await store.deleteBlock(crashTempRef(n));
    } else {
      await store.writeBlock(crashRef(n), crashWritten(n, blockSizeBytes));
    }
    if (n % CRASH_CHURN_PATCH_EVERY === 0) {
      await store.writeBlockRange(crashRef(n), ...crashPatch(n, blockSizeBytes));
    }
    if (n % CRASH_CHURN_FLUSH_EVERY === 0) await store.flush();
  }
  await store.close();
}

if (import.meta.main) await main(Deno.args);
