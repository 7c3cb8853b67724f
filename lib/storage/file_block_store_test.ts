import assertNode from "node:assert/strict";
import { BlockRef, BlockType, writeU64 } from "../core/block_ref.ts";
import { crc32 } from "../core/crc32.ts";
import { sectorCrcs } from "../core/sector.ts";
import { BlockCorruptError, BlockNotFoundError, OutOfSpaceError, TorusError } from "../errors.ts";
import { Prng } from "../prng.ts";
import { testBlockStore } from "./_block_store_conformance.ts";
import type { BlockStore } from "./block_store.ts";
import { MemoryBlockStore } from "./memory_block_store.ts";
import { IO_THREAD_MIN_BYTES, ioThreadStats } from "./io_thread.ts";
import {
  CRASH_DELETE_EVERY,
  crashCopyRef,
  crashExpected,
  crashFlushedPatched,
  crashRef,
} from "./_crash_writer.ts";
import {
  DATA_FILE_NAME,
  DATA_WRITE_PIECE_BYTES,
  DELTA_FILE_NAME,
  FileBlockStore,
  type FileBlockStoreIo,
  INDEX_FILE_NAME,
  INDEX_HEADER_REGION_BYTES,
  INDEX_MAGIC,
  indexRecordSizeBytes,
  packedDeltaSectorsMax,
} from "./file_block_store.ts";

const BLOCK = 16384;
/** Blocks whose whole-block reads and writes go to the I/O thread. */
const BIG_BLOCK = 512 * 1024;

function ref(index: number): BlockRef {
  return new BlockRef(5, BlockType.data, 9, index);
}

/** A fresh store in a temporary directory that `close()` removes. */
async function openTemp(
  blockSizeBytes: number,
  numBlocks: number,
  io?: FileBlockStoreIo,
): Promise<FileBlockStore> {
  const root = await Deno.makeTempDir({ prefix: "torus-file-store-" });
  const store = await FileBlockStore.open({
    directory: `${root}/block`,
    blockSizeBytes,
    sizeBytes: numBlocks * blockSizeBytes,
    io,
  });
  const close = store.close.bind(store);
  store.close = async () => {
    try {
      await close();
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  };
  return store;
}

/** Runs `body` with a temporary root directory, removed afterwards. */
async function withTempDir(body: (directory: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "torus-file-store-" });
  try {
    await body(`${root}/block`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

function open(
  directory: string,
  numBlocks: number,
  blockSizeBytes = BLOCK,
  io?: FileBlockStoreIo,
) {
  return FileBlockStore.open({
    directory,
    blockSizeBytes,
    sizeBytes: numBlocks * blockSizeBytes,
    io,
  });
}

const testLibc = Deno.dlopen("libc.so.6", {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  fdatasync: { parameters: ["i32"], result: "i32" },
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  mincore: { parameters: ["pointer", "usize", "buffer"], result: "i32" },
}).symbols;
const O_RDONLY = 0;
const POSIX_FADV_DONTNEED = 4;
const PROT_READ = 1;
const MAP_SHARED = 1;
const PAGE_BYTES = 4096;
/** Attempts of {@linkcode evictData}: pages still being written back are not dropped at once. */
const EVICT_ATTEMPTS = 100;

/**
 * Drops the pages of the data file in `directory` from the page cache (writing dirty ones first), and
 * checks with `mincore` that none is left, so that the next read of them
 * must wait for the disk and go to the I/O thread. The temporary directory
 * must be on a disk filesystem: tmpfs keeps its pages.
 */
async function evictData(directory: string) {
  const path = `${directory}/${DATA_FILE_NAME}`;
  const lengthBytes = Deno.statSync(path).size;
  const fd = testLibc.open(new TextEncoder().encode(`${path}\0`), O_RDONLY, 0);
  assertNode.ok(fd >= 0, `cannot open ${path}`);
  const map = testLibc.mmap(null, BigInt(lengthBytes), PROT_READ, MAP_SHARED, fd, 0n);
  assertNode.ok(map !== null && Deno.UnsafePointer.value(map) !== 0xffff_ffff_ffff_ffffn, "mmap");
  try {
    const resident = new Uint8Array(lengthBytes / PAGE_BYTES);
    for (let attempt = 1;; attempt++) {
      assertNode.equal(testLibc.fdatasync(fd), 0, `fdatasync ${path}`);
      assertNode.equal(
        testLibc.posix_fadvise(fd, 0n, 0n, POSIX_FADV_DONTNEED),
        0,
      );
      assertNode.equal(testLibc.mincore(map, BigInt(lengthBytes), resident), 0, "mincore");
      if (resident.every((page) => (page & 1) === 0)) return;
      assertNode.ok(
        attempt < EVICT_ATTEMPTS,
        `${path}: pages stay in the page cache (is the temporary directory on tmpfs?)`,
      );
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } finally {
    testLibc.munmap(map, BigInt(lengthBytes));
    testLibc.close(fd);
  }
}

/** Finds the slot of `target` by reading the index file, as a tool would. */
async function slotOf(directory: string, blockSizeBytes: number, target: BlockRef) {
  const index = await Deno.readFile(`${directory}/${INDEX_FILE_NAME}`);
  const recordSize = indexRecordSizeBytes(blockSizeBytes);
  for (let slot = 0; INDEX_HEADER_REGION_BYTES + (slot + 1) * recordSize <= index.length; slot++) {
    const at = INDEX_HEADER_REGION_BYTES + slot * recordSize;
    try {
      if (BlockRef.fromBytes(index, at).equals(target)) return slot;
    } catch {
      // Not a record of a block.
    }
  }
  throw new Error(`${target} has no record in ${directory}`);
}

/** What `op` gives on `store`: its value, or the class of the error it throws. */
async function outcomeOf(store: BlockStore, op: (store: BlockStore) => Promise<unknown>) {
  try {
    return { value: await op(store), error: undefined };
  } catch (error) {
    return { value: undefined, error: (error as Error).constructor.name };
  }
}

/** Asserts that `op` gives on `store` the value or error class it gives on `reference`. */
async function assertSameOutcome(
  what: string,
  store: BlockStore,
  reference: BlockStore,
  op: (store: BlockStore) => Promise<unknown>,
): Promise<void> {
  const want = await outcomeOf(reference, op);
  assertNode.deepEqual(summarized(await outcomeOf(store, op)), summarized(want), what);
}

/**
 * An outcome with the bytes of a read replaced by their length and CRC-32:
 * node:assert takes minutes to describe two different 512 KiB arrays.
 */
function summarized(outcome: { value: unknown; error: string | undefined }) {
  const value = outcome.value as { data?: unknown } | undefined;
  if (!(value?.data instanceof Uint8Array)) return outcome;
  const data = `${value.data.length} bytes, CRC-32 ${crc32(value.data)}`;
  return { ...outcome, value: { ...value, data } };
}

/** Applies `change` to `length` bytes of a file at `offset`, behind any store's back. */
async function patchFile(
  path: string,
  offset: number,
  length: number,
  change: (bytes: Uint8Array) => void,
): Promise<void> {
  const file = await Deno.open(path, { read: true, write: true });
  try {
    const bytes = new Uint8Array(length);
    await file.seek(offset, Deno.SeekMode.Start);
    assertNode.equal(await file.read(bytes), length);
    change(bytes);
    await file.seek(offset, Deno.SeekMode.Start);
    await file.write(bytes);
  } finally {
    file.close();
  }
}

testBlockStore("FileBlockStore", (options) => openTemp(options.blockSizeBytes, options.numBlocks), {
  corrupt: async (store, target, offsetBytes) => {
    const { directory, blockSizeBytes } = store as FileBlockStore;
    await store.flush(); // records reach the index file at flush
    const slot = await slotOf(directory, blockSizeBytes, target);
    await patchFile(
      `${directory}/${DATA_FILE_NAME}`,
      slot * blockSizeBytes + offsetBytes,
      1,
      (bytes) => bytes[0] = bytes[0]! ^ 0xff,
    );
  },
  readsNow: true,
});

for (const io of ["mmap", "fsfile"] as const) {
  // The alternatives the benchmark measures must be correct too.
  testBlockStore(`FileBlockStore (${io})`, async ({ blockSizeBytes, numBlocks }) => {
    const root = await Deno.makeTempDir({ prefix: "torus-file-store-" });
    const store = await FileBlockStore.open({
      directory: `${root}/block`,
      blockSizeBytes,
      sizeBytes: numBlocks * blockSizeBytes,
      io,
    });
    const close = store.close.bind(store);
    store.close = async () => {
      try {
        await close();
      } finally {
        await Deno.remove(root, { recursive: true });
      }
    };
    return store;
  }, { readsNow: true });
}

Deno.test("FileBlockStore: random operations match MemoryBlockStore, before and after reopen", async () => {
  await withTempDir(async (directory) => {
    const prng = new Prng(0xd1ff);
    const numBlocks = 12;
    const memory = new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks });
    let file = await open(directory, numBlocks);
    const same = (what: string, op: (store: BlockStore) => Promise<unknown>) =>
      assertSameOutcome(what, file, memory, op);
    for (let step = 0; step < 1500; step++) {
      const target = ref(prng.nextInt(16));
      const choice = prng.nextInt(10);
      const offset = prng.nextInt(BLOCK);
      const length = prng.nextInt(BLOCK - offset + 1);
      if (choice < 3) {
        const data = prng.fill(new Uint8Array(prng.nextInt(BLOCK + 1)));
        await same(`write ${step}`, (s) => s.writeBlock(target, data));
      } else if (choice < 6) {
        const data = prng.fill(new Uint8Array(prng.nextInt(3) === 0 ? 4096 : length));
        const at = prng.nextInt(3) === 0 ? Math.floor(offset / 4096) * 4096 : offset;
        if (at + data.length > BLOCK) continue;
        await same(`patch ${step}`, (s) => s.writeBlockRange(target, at, data));
      } else if (choice < 7) {
        await same(`delete ${step}`, (s) => s.deleteBlock(target));
      } else {
        await same(
          `read ${step}`,
          (s) => s.readBlock(target, { offsetBytes: offset, lengthBytes: length }),
        );
      }
      if (step % 500 === 499) {
        await file.close();
        file = await open(directory, numBlocks);
      }
      assertNode.equal(file.usedBlocks(), memory.usedBlocks());
    }
    for (const r of memory.blockRefs()) await same(`final ${r}`, (s) => s.readBlock(r));
    await file.close();
    await memory.close();
  });
});

Deno.test("FileBlockStore: close() while a flush is in flight lets the flush finish", async () => {
  const store = await openTemp(BLOCK, 4);
  await store.writeBlock(ref(1), new Uint8Array([1]));
  const flush = store.flush();
  await store.close();
  await flush;
});

Deno.test("FileBlockStore: creates the directory and both files with the documented sizes", async () => {
  await withTempDir(async (directory) => {
    const store = await open(directory, 10);
    assertNode.equal((await Deno.stat(directory)).mode! & 0o777, 0o700);
    assertNode.equal((await Deno.stat(`${directory}/${DATA_FILE_NAME}`)).size, 10 * BLOCK);
    const index = await Deno.readFile(`${directory}/${INDEX_FILE_NAME}`);
    assertNode.equal(index.length, INDEX_HEADER_REGION_BYTES + 10 * indexRecordSizeBytes(BLOCK));
    assertNode.equal(new TextDecoder().decode(index.subarray(0, 8)), INDEX_MAGIC);
    assertNode.equal(indexRecordSizeBytes(BLOCK), 64);
    assertNode.equal(indexRecordSizeBytes(512 * 1024), 1024);
    assertNode.equal(indexRecordSizeBytes(256), 64);
    await store.close();
  });
});

Deno.test("FileBlockStore: reopen keeps blocks, sector CRCs and free slots", async () => {
  await withTempDir(async (directory) => {
    const prng = new Prng(41);
    const expected = new Map<number, Uint8Array>();
    let store = await open(directory, 16);
    for (let i = 1; i <= 10; i++) {
      const data = prng.fill(new Uint8Array(BLOCK - i * 700));
      await store.writeBlock(ref(i), data);
      const block = new Uint8Array(BLOCK);
      block.set(data);
      expected.set(i, block);
    }
    for (const i of [2, 5, 9]) {
      assertNode.equal(await store.deleteBlock(ref(i)), true);
      expected.delete(i);
    }
    const patch = prng.fill(new Uint8Array(6000));
    await store.writeBlockRange(ref(3), 1234, patch);
    expected.get(3)!.set(patch, 1234);
    await store.close();

    store = await open(directory, 16);
    assertNode.equal(store.usedBlocks(), 7);
    assertNode.deepEqual(
      store.blockRefs().map((r) => r.index).sort((a, b) => a - b),
      [...expected.keys()].sort((a, b) => a - b),
    );
    for (const [i, block] of expected) {
      const { data, sectorCrcs: crcs } = await store.readBlock(ref(i));
      assertNode.deepEqual(data, block);
      assertNode.deepEqual(crcs, sectorCrcs(block, BLOCK));
    }
    for (const i of [2, 5, 9]) {
      await assertNode.rejects(store.readBlock(ref(i)), BlockNotFoundError);
    }
    for (let i = 100; i < 109; i++) await store.writeBlock(ref(i), new Uint8Array([i]));
    assertNode.equal(store.usedBlocks(), 16);
    await assertNode.rejects(store.writeBlock(ref(200), new Uint8Array(1)), OutOfSpaceError);
    await store.close();
  });
});

Deno.test("FileBlockStore: reopen with a bigger size grows the files", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 4);
    for (let i = 1; i <= 4; i++) await store.writeBlock(ref(i), new Uint8Array([i, i]));
    await assertNode.rejects(store.writeBlock(ref(5), new Uint8Array(1)), OutOfSpaceError);
    await store.close();

    store = await open(directory, 9);
    assertNode.equal(store.numBlocks(), 9);
    assertNode.equal((await Deno.stat(`${directory}/${DATA_FILE_NAME}`)).size, 9 * BLOCK);
    assertNode.equal(
      (await Deno.stat(`${directory}/${INDEX_FILE_NAME}`)).size,
      INDEX_HEADER_REGION_BYTES + 9 * indexRecordSizeBytes(BLOCK),
    );
    for (let i = 1; i <= 4; i++) assertNode.equal((await store.readBlock(ref(i))).data[1], i);
    for (let i = 5; i <= 9; i++) await store.writeBlock(ref(i), new Uint8Array([i, i]));
    await store.close();

    store = await open(directory, 9);
    assertNode.equal(store.usedBlocks(), 9);
    for (let i = 1; i <= 9; i++) assertNode.equal((await store.readBlock(ref(i))).data[1], i);
    await store.close();
  });
});

Deno.test("FileBlockStore: a smaller size moves blocks down, or is refused when they do not fit", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 16);
    const prng = new Prng(7);
    const blocks = new Map<number, Uint8Array>();
    for (let i = 0; i < 16; i++) {
      const data = prng.fill(new Uint8Array(BLOCK));
      blocks.set(i, data);
      await store.writeBlock(ref(i), data);
    }
    for (let i = 0; i < 12; i++) {
      await store.deleteBlock(ref(i));
      blocks.delete(i);
    }
    await store.close();

    await assertNode.rejects(open(directory, 3), (error: Error) => {
      assertNode.ok(error instanceof TorusError);
      assertNode.match(error.message, /it holds 4 blocks/);
      return true;
    });
    store = await open(directory, 6);
    assertNode.equal(store.numBlocks(), 6);
    assertNode.equal((await Deno.stat(`${directory}/${DATA_FILE_NAME}`)).size, 6 * BLOCK);
    for (const [i, data] of blocks) {
      assertNode.deepEqual((await store.readBlock(ref(i))).data, data);
    }
    await store.writeBlock(ref(50), new Uint8Array([1]));
    await store.writeBlock(ref(51), new Uint8Array([1]));
    await assertNode.rejects(store.writeBlock(ref(52), new Uint8Array(1)), OutOfSpaceError);
    await store.close();

    store = await open(directory, 6);
    assertNode.equal(store.usedBlocks(), 6);
    for (const [i, data] of blocks) {
      assertNode.deepEqual((await store.readBlock(ref(i))).data, data);
    }
    await store.close();
  });
});

Deno.test("FileBlockStore: reopen with a different block size is refused", async () => {
  await withTempDir(async (directory) => {
    const store = await open(directory, 4);
    await store.close();
    await assertNode.rejects(open(directory, 16, 4096), (error: Error) => {
      assertNode.ok(error instanceof TorusError);
      assertNode.match(error.message, /holds blocks of 16384 bytes, not 4096/);
      return true;
    });
    // The refused open released the lock.
    await (await open(directory, 4)).close();
  });
});

Deno.test("FileBlockStore: a second open of the same directory fails with a clear message", async () => {
  await withTempDir(async (directory) => {
    const store = await open(directory, 4);
    await assertNode.rejects(open(directory, 4), (error: Error) => {
      assertNode.ok(error instanceof TorusError);
      assertNode.equal(
        error.message,
        `Cannot open block store in ${directory}: it is in use by another process (is torusd running?)`,
      );
      return true;
    });
    await store.close();
    await (await open(directory, 4)).close();
  });
});

Deno.test("FileBlockStore: a torn index record frees its slot and spares the others", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 3);
    for (let i = 1; i <= 3; i++) await store.writeBlock(ref(i), new Uint8Array([i]));
    await store.close();
    const slot = await slotOf(directory, BLOCK, ref(2));
    const recordSize = indexRecordSizeBytes(BLOCK);
    // Garble the second half of the record, as a write torn in the middle would.
    await patchFile(
      `${directory}/${INDEX_FILE_NAME}`,
      INDEX_HEADER_REGION_BYTES + slot * recordSize + recordSize / 2,
      recordSize / 2,
      (bytes) => new Prng(3).fill(bytes),
    );

    store = await open(directory, 3);
    assertNode.equal(store.usedBlocks(), 2);
    await assertNode.rejects(store.readBlock(ref(2)), BlockNotFoundError);
    assertNode.equal((await store.readBlock(ref(1))).data[0], 1);
    assertNode.equal((await store.readBlock(ref(3))).data[0], 3);
    await store.writeBlock(ref(4), new Uint8Array([4]));
    await assertNode.rejects(store.writeBlock(ref(5), new Uint8Array(1)), OutOfSpaceError);
    await store.close();
  });
});

Deno.test("FileBlockStore: a record whose data never reached the disk reads as BlockCorruptError", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 2);
    const data = new Prng(5).fill(new Uint8Array(BLOCK));
    await store.writeBlock(ref(1), data);
    await store.close();
    // The record is on disk; the data is not: the slot still holds zeros from
    // sector 1 on, as if the crash came between the two writes.
    const slot = await slotOf(directory, BLOCK, ref(1));
    await patchFile(
      `${directory}/${DATA_FILE_NAME}`,
      slot * BLOCK + 4096,
      BLOCK - 4096,
      (bytes) => bytes.fill(0),
    );

    store = await open(directory, 2);
    assertNode.equal(await store.hasBlock(ref(1)), true);
    await assertNode.rejects(store.readBlock(ref(1)), BlockCorruptError);
    await assertNode.rejects(
      store.readBlock(ref(1), { offsetBytes: 9000, lengthBytes: 10 }),
      BlockCorruptError,
    );
    const { data: head } = await store.readBlock(ref(1), { offsetBytes: 0, lengthBytes: 4096 });
    assertNode.deepEqual(head, data.subarray(0, 4096));
    // A rewrite heals it.
    await store.writeBlock(ref(1), data);
    assertNode.deepEqual((await store.readBlock(ref(1))).data, data);
    await store.close();
  });
});

Deno.test("FileBlockStore: a damaged header copy is repaired; two are a clear error", async () => {
  await withTempDir(async (directory) => {
    const store = await open(directory, 2);
    await store.writeBlock(ref(1), new Uint8Array([1]));
    await store.close();
    const indexPath = `${directory}/${INDEX_FILE_NAME}`;
    const flip = (bytes: Uint8Array) => bytes[0] = bytes[0]! ^ 1;
    // Each copy in turn: the open repairs it from the other.
    for (const offset of [12, 512 + 12]) {
      await patchFile(indexPath, offset, 1, flip);
      const reopened = await open(directory, 2);
      assertNode.equal((await reopened.readBlock(ref(1))).data[0], 1);
      await reopened.close();
    }
    await patchFile(indexPath, 12, 1, flip);
    await patchFile(indexPath, 512 + 12, 1, flip);
    await assertNode.rejects(open(directory, 2), (error: Error) => {
      assertNode.ok(error instanceof SyntaxError);
      assertNode.match(error.message, /both copies of its header are damaged/);
      return true;
    });
  });
});

Deno.test("FileBlockStore: of two records for one ref, the higher generation wins", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 4);
    const older = new Prng(1).fill(new Uint8Array(BLOCK));
    await store.writeBlock(ref(1), older);
    await store.close();

    // Forge what a crash while moving a block leaves: a copy in another slot
    // with newer bytes and a record one generation newer.
    const slot = await slotOf(directory, BLOCK, ref(1));
    const copySlot = slot + 1;
    const newer = new Prng(2).fill(new Uint8Array(BLOCK));
    await patchFile(`${directory}/${DATA_FILE_NAME}`, copySlot * BLOCK, BLOCK, (b) => b.set(newer));
    const recordSize = indexRecordSizeBytes(BLOCK);
    const indexPath = `${directory}/${INDEX_FILE_NAME}`;
    const record = new Uint8Array(recordSize);
    await patchFile(indexPath, INDEX_HEADER_REGION_BYTES + slot * recordSize, recordSize, (b) => {
      record.set(b);
    });
    const view = new DataView(record.buffer);
    view.setUint32(24, view.getUint32(24, true) + 1, true);
    const crcs = sectorCrcs(newer, BLOCK);
    for (let i = 0; i < crcs.length; i++) view.setUint32(32 + 4 * i, crcs[i]!, true);
    const crcOffset = 32 + 4 * crcs.length;
    const slotBytes = new Uint8Array(8);
    writeU64(new DataView(slotBytes.buffer), 0, copySlot);
    view.setUint32(crcOffset, crc32(slotBytes, crc32(record.subarray(0, crcOffset))), true);
    await patchFile(
      indexPath,
      INDEX_HEADER_REGION_BYTES + copySlot * recordSize,
      recordSize,
      (b) => b.set(record),
    );

    for (let round = 0; round < 2; round++) {
      store = await open(directory, 4);
      assertNode.equal(store.usedBlocks(), 1);
      assertNode.deepEqual((await store.readBlock(ref(1))).data, newer);
      await store.close();
    }
    assertNode.equal(await slotOf(directory, BLOCK, ref(1)), copySlot);
  });
});

for (const blockSizeBytes of [16384, 65536]) {
  Deno.test(
    `FileBlockStore: flushed blocks survive kill -9 and nothing reads as wrong bytes (${
      blockSizeBytes / 1024
    } KiB blocks: ${packedDeltaSectorsMax(blockSizeBytes) > 0 ? "packed " : ""}deltas)`,
    async () => {
      await withTempDir(async (directory) => {
        const numBlocks = 200;
        const flushed = 120;
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            new URL("./_crash_writer.ts", import.meta.url).pathname,
            directory,
            String(blockSizeBytes),
            String(numBlocks),
            String(flushed),
          ],
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let output = "";
        try {
          while (!/^FLUSHED \d+$/m.test(output)) {
            const { value, done } = await reader.read();
            if (done) throw new Error(`The crash writer exited early; it printed: ${output}`);
            output += value;
          }
          assertNode.match(output, new RegExp(`^FLUSHED ${flushed}$`, "m"));
          // The writer holds the store: this process cannot open it too.
          await assertNode.rejects(
            open(directory, numBlocks, blockSizeBytes),
            /in use by another process/,
          );
          // Let it churn unflushed writes, patches and deletes, then kill it mid-flight.
          await new Promise((resolve) => setTimeout(resolve, 400));
        } finally {
          child.kill("SIGKILL");
          await reader.cancel();
        }
        const status = await child.status;
        assertNode.equal(status.signal, "SIGKILL");

        const store = await open(directory, numBlocks, blockSizeBytes);
        let churned = 0;
        let corrupt = 0;
        for (let n = 0; n < flushed; n++) {
          if (n % CRASH_DELETE_EVERY === 0) {
            await assertNode.rejects(store.readBlock(crashRef(n)), BlockNotFoundError);
            continue;
          }
          const [written, patched] = crashExpected(n, blockSizeBytes);
          const want = crashFlushedPatched(n) ? patched : written;
          const { data, sectorCrcs: crcs } = await store.readBlock(crashRef(n));
          assertNode.deepEqual(data, want, `flushed block ${n}`);
          assertNode.deepEqual(crcs, sectorCrcs(want, blockSizeBytes));
        }
        let copies = 0;
        for (const r of store.blockRefs()) {
          const n = r.index - 1;
          const copy = r.inode === crashCopyRef(n).inode;
          if (n < flushed && !copy) continue;
          if (copy) copies++;
          churned++;
          try {
            const { data } = await store.readBlock(r);
            const [written, patched] = crashExpected(n, blockSizeBytes);
            assertNode.ok(
              copy
                ? equalBytes(data, patched)
                : equalBytes(data, written) || equalBytes(data, patched),
              `unflushed ${copy ? "copy of block" : "block"} ${n} reads as wrong bytes`,
            );
          } catch (error) {
            if (!(error instanceof BlockCorruptError)) throw error;
            corrupt++;
          }
        }
        assertNode.ok(churned > 0, "the writer churned no block before it was killed");
        assertNode.ok(copies > 0, "the writer copied no flushed delta before it was killed");
        assertNode.ok(corrupt <= churned);
        // The store is usable: a delete, a write and a reopen keep it consistent.
        const victim = store.blockRefs().find((r) => r.index - 1 >= flushed)!;
        await store.deleteBlock(victim);
        await store.writeBlock(ref(1), new Uint8Array([1]));
        const used = store.usedBlocks();
        await store.close();
        const again = await open(directory, numBlocks, blockSizeBytes);
        assertNode.equal(again.usedBlocks(), used);
        assertNode.equal(await again.hasBlock(victim), false);
        assertNode.equal((await again.readBlock(ref(1))).data[0], 1);
        await again.close();
      });
    },
  );
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

// ---------------------------------------------------------------------------
// Deltas: copy-on-write that borrows the unchanged sectors

/** Four sectors per block (BLOCK is 16 KiB): one patched sector is a delta. */
const SECTOR = 4096;

function filled(seed: number, length = BLOCK): Uint8Array {
  return new Prng(seed).fill(new Uint8Array(length));
}

function patched(base: Uint8Array, offset: number, data: Uint8Array): Uint8Array {
  const copy = base.slice();
  copy.set(data, offset);
  return copy;
}

async function assertBlock(store: BlockStore, target: BlockRef, want: Uint8Array): Promise<void> {
  assertNode.deepEqual((await store.readBlock(target)).data, want, `${target}`);
  // Sector by sector too, through the caller's-buffer path.
  for (let at = 0; at < want.length; at += SECTOR) {
    const into = new Uint8Array(SECTOR);
    await store.readBlock(target, { offsetBytes: at, lengthBytes: SECTOR }, undefined, into);
    assertNode.deepEqual(into, want.subarray(at, at + SECTOR), `${target} at ${at}`);
  }
}

Deno.test("FileBlockStore: a copy that changes one sector stores only that sector and borrows the rest", async () => {
  await withTempDir(async (directory) => {
    const store = await open(directory, 4);
    const base = filled(1);
    await store.writeBlock(ref(1), base);
    const change = filled(2, 100);
    await store.copyBlock(ref(1), ref(2), SECTOR + 7, change);
    assertNode.equal(store.deltaBlocks(), 1);
    assertNode.equal(store.usedBlocks(), 2);
    await assertBlock(store, ref(2), patched(base, SECTOR + 7, change));
    await assertBlock(store, ref(1), base);
    await store.flush();
    // The copy's slot holds its one sector; the others were never written (still zero).
    const slot = await slotOf(directory, BLOCK, ref(2));
    const data = await Deno.readFile(`${directory}/${DATA_FILE_NAME}`);
    const own = data.subarray(slot * BLOCK, (slot + 1) * BLOCK);
    assertNode.ok(own.subarray(0, SECTOR).every((byte) => byte === 0));
    assertNode.ok(own.subarray(2 * SECTOR).every((byte) => byte === 0));
    assertNode.deepEqual(
      own.subarray(SECTOR, 2 * SECTOR),
      patched(base, SECTOR + 7, change).subarray(SECTOR, 2 * SECTOR),
    );
    await store.close();
  });
});

Deno.test("FileBlockStore: a copy that changes most sectors is a whole block", async () => {
  const store = await openTemp(BLOCK, 4);
  const base = filled(1);
  await store.writeBlock(ref(1), base);
  const change = filled(2, 3 * SECTOR - 10);
  await store.copyBlock(ref(1), ref(2), 5, change);
  assertNode.equal(store.deltaBlocks(), 0);
  await store.deleteBlock(ref(1));
  assertNode.equal(store.usedBlocks(), 1);
  await assertBlock(store, ref(2), patched(base, 5, change));
  await store.close();
});

Deno.test("FileBlockStore: a deleted block's slot stays while a delta borrows it; flush merges the delta into it", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 4);
    const base = filled(1);
    await store.writeBlock(ref(1), base);
    await store.flush();
    const lent = await slotOf(directory, BLOCK, ref(1));
    const change = filled(3, SECTOR);
    await store.copyBlock(ref(1), ref(2), 2 * SECTOR, change);
    const want = patched(base, 2 * SECTOR, change);
    assertNode.equal(await store.deleteBlock(ref(1)), true);
    assertNode.equal(await store.hasBlock(ref(1)), false);
    assertNode.deepEqual(store.blockRefs(), [ref(2)]);
    assertNode.equal(store.usedBlocks(), 2, "the deleted block's sectors are still borrowed");
    await assertBlock(store, ref(2), want);

    await store.flush();
    assertNode.equal(store.usedBlocks(), 1);
    assertNode.equal(store.deltaBlocks(), 0);
    await assertBlock(store, ref(2), want);
    await store.flush(); // writes the zero record of the slot the delta left
    assertNode.equal(await slotOf(directory, BLOCK, ref(2)), lent, "merged into the lent slot");
    await store.close();

    store = await open(directory, 4);
    assertNode.equal(store.usedBlocks(), 1);
    assertNode.equal(store.deltaBlocks(), 0);
    await assertBlock(store, ref(2), want);
    await store.close();
  });
});

Deno.test("FileBlockStore: a delta that owns most of its block merges the other way: the lender's few sectors come to it", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 4);
    const base = filled(1);
    await store.writeBlock(ref(1), base);
    await store.flush();
    const lent = await slotOf(directory, BLOCK, ref(1));
    const change = filled(3, SECTOR);
    await store.copyBlock(ref(1), ref(2), 2 * SECTOR, change);
    let want = patched(base, 2 * SECTOR, change);
    await store.flush();
    const own = await slotOf(directory, BLOCK, ref(2));
    assertNode.notEqual(own, lent);
    // Two more sectors of its own: it owns 3 of 4, borrows 1.
    for (const at of [0, 3 * SECTOR]) {
      const more = filled(4 + at, SECTOR);
      await store.writeBlockRange(ref(2), at, more);
      want = patched(want, at, more);
    }
    assertNode.equal(store.deltaBlocks(), 1);
    await store.deleteBlock(ref(1));
    assertNode.equal(store.usedBlocks(), 2);

    await store.flush();
    assertNode.equal(store.deltaBlocks(), 0);
    assertNode.equal(store.usedBlocks(), 1, "the lent slot is free");
    await assertBlock(store, ref(2), want);
    await store.flush(); // writes the zero record of the freed lender
    assertNode.equal(await slotOf(directory, BLOCK, ref(2)), own, "whole in its own slot");
    // The borrowed sector was copied in: the slot alone holds the block.
    const data = await Deno.readFile(`${directory}/${DATA_FILE_NAME}`);
    assertNode.ok(
      data.subarray(own * BLOCK, (own + 1) * BLOCK).every((byte, i) => byte === want[i]),
      "the slot holds the whole block",
    );
    // The freed slot takes a new block without touching the merged one.
    await store.writeBlock(ref(3), filled(9));
    await store.flush();
    assertNode.equal(await slotOf(directory, BLOCK, ref(3)), lent);
    await store.close();

    store = await open(directory, 4);
    assertNode.equal(store.deltaBlocks(), 0);
    assertNode.equal(store.usedBlocks(), 2);
    await assertBlock(store, ref(2), want);
    await assertBlock(store, ref(3), filled(9));
    await store.close();
  });
});

Deno.test("FileBlockStore: reopen keeps deltas and the slots they borrow from, then merges", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 4);
    const base = filled(1);
    await store.writeBlock(ref(1), base);
    const change = filled(4, 10);
    await store.copyBlock(ref(1), ref(2), 3 * SECTOR + 1, change);
    const want = patched(base, 3 * SECTOR + 1, change);
    await store.flush();
    await store.deleteBlock(ref(1));
    await store.close(); // close flushes without merging

    store = await open(directory, 4);
    assertNode.equal(store.usedBlocks(), 2);
    assertNode.equal(store.deltaBlocks(), 1);
    assertNode.deepEqual(store.blockRefs(), [ref(2)]);
    await assertBlock(store, ref(2), want);
    await store.flush();
    assertNode.equal(store.usedBlocks(), 1);
    await assertBlock(store, ref(2), want);
    await store.close();

    store = await open(directory, 4);
    assertNode.equal(store.deltaBlocks(), 0);
    await assertBlock(store, ref(2), want);
    await store.close();
  });
});

Deno.test("FileBlockStore: a delta of a delta borrows from the first block; deleting both merges the last", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 6);
    const base = filled(1);
    await store.writeBlock(ref(1), base);
    const first = filled(5, 20);
    await store.copyBlock(ref(1), ref(2), 10, first);
    const second = filled(6, 20);
    await store.copyBlock(ref(2), ref(3), 3 * SECTOR, second);
    const want2 = patched(base, 10, first);
    const want3 = patched(want2, 3 * SECTOR, second);
    assertNode.equal(store.deltaBlocks(), 2);
    await store.deleteBlock(ref(1));
    await store.flush();
    assertNode.equal(store.usedBlocks(), 3, "two deltas borrow: no merge");
    await assertBlock(store, ref(2), want2);
    await assertBlock(store, ref(3), want3);
    await store.deleteBlock(ref(2));
    await store.flush();
    assertNode.equal(store.usedBlocks(), 1);
    assertNode.equal(store.deltaBlocks(), 0);
    await assertBlock(store, ref(3), want3);
    await store.close();
    store = await open(directory, 6);
    await assertBlock(store, ref(3), want3);
    assertNode.equal(store.usedBlocks(), 1);
    await store.close();
  });
});

Deno.test("FileBlockStore: writing a block that deltas borrow from moves it; the deltas keep its old bytes", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 6);
    const base = filled(1);
    await store.writeBlock(ref(1), base);
    const change = filled(7, 30);
    await store.copyBlock(ref(1), ref(2), 0, change);
    const want2 = patched(base, 0, change);
    const range = filled(8, 50);
    await store.writeBlockRange(ref(1), SECTOR + 3, range);
    await assertBlock(store, ref(1), patched(base, SECTOR + 3, range));
    await assertBlock(store, ref(2), want2);
    assertNode.equal(store.usedBlocks(), 3, "old bytes of ref 1 kept for the delta");
    const whole = filled(9);
    await store.writeBlock(ref(1), whole);
    await assertBlock(store, ref(1), whole);
    await assertBlock(store, ref(2), want2);
    await store.flush(); // the old slot is merged into
    assertNode.equal(store.usedBlocks(), 2);
    await store.close();
    store = await open(directory, 6);
    await assertBlock(store, ref(1), whole);
    await assertBlock(store, ref(2), want2);
    await store.close();
  });
});

Deno.test("FileBlockStore: a corrupt borrowed sector reads as BlockCorruptError through the delta", async () => {
  await withTempDir(async (directory) => {
    const store = await open(directory, 4);
    await store.writeBlock(ref(1), filled(1));
    await store.copyBlock(ref(1), ref(2), 0, filled(2, 8));
    await store.flush();
    const lender = await slotOf(directory, BLOCK, ref(1));
    await patchFile(`${directory}/${DATA_FILE_NAME}`, lender * BLOCK + 2 * SECTOR + 9, 1, (b) => {
      b[0] = b[0]! ^ 0x40;
    });
    await assertNode.rejects(
      store.readBlock(ref(2), { offsetBytes: 2 * SECTOR, lengthBytes: 100 }),
      BlockCorruptError,
    );
    await assertNode.rejects(
      store.copyBlock(ref(2), ref(3), 2 * SECTOR + 1, filled(3, 4)),
      BlockCorruptError,
    );
    assertNode.equal(
      (await store.readBlock(ref(2), { offsetBytes: 0, lengthBytes: 8 })).data.length,
      8,
    );
    // The failed copy left nothing behind: deleting both blocks frees every slot.
    assertNode.equal(store.deltaBlocks(), 1);
    assertNode.equal(store.usedBlocks(), 2);
    await store.deleteBlock(ref(1));
    await store.deleteBlock(ref(2));
    assertNode.equal(store.usedBlocks(), 0);
    assertNode.equal(store.deltaBlocks(), 0);
    await store.close();
  });
});

Deno.test("FileBlockStore: a delta record with a torn extension frees its slot only", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 4);
    const base = filled(1);
    await store.writeBlock(ref(1), base);
    await store.copyBlock(ref(1), ref(2), 0, filled(2, 8));
    await store.close();
    const slot = await slotOf(directory, BLOCK, ref(2));
    const recordSize = indexRecordSizeBytes(BLOCK);
    // The bitmap word, after the record CRC and the lender field.
    const bitmap = INDEX_HEADER_REGION_BYTES + slot * recordSize + recordSize - 8;
    await patchFile(`${directory}/${INDEX_FILE_NAME}`, bitmap, 1, (b) => {
      b[0] = b[0]! ^ 0x02;
    });
    store = await open(directory, 4);
    await assertNode.rejects(store.readBlock(ref(2)), BlockNotFoundError);
    await assertBlock(store, ref(1), base);
    assertNode.equal(store.usedBlocks(), 1);
    await store.close();
  });
});

Deno.test("FileBlockStore: shrinking is refused while a lent slot lies beyond the new size", async () => {
  await withTempDir(async (directory) => {
    let store = await open(directory, 8);
    for (let i = 1; i <= 6; i++) await store.writeBlock(ref(i), filled(i));
    await store.copyBlock(ref(6), ref(7), 0, filled(70, 8));
    for (let i = 1; i <= 5; i++) await store.deleteBlock(ref(i));
    await store.close();
    const lent = await slotOf(directory, BLOCK, ref(6));
    assertNode.ok(lent >= 3, `ref 6 is in slot ${lent}`);
    await assertNode.rejects(
      open(directory, 3),
      (error) => error instanceof TorusError && /share sectors/.test(error.message),
    );
    store = await open(directory, 8);
    await assertBlock(store, ref(7), patched(filled(6), 0, filled(70, 8)));
    await store.deleteBlock(ref(6));
    await store.flush(); // merges ref 7 into ref 6's slot
    await store.close();
    store = await open(directory, 3);
    await assertBlock(store, ref(7), patched(filled(6), 0, filled(70, 8)));
    await store.close();
  });
});

for (const version of [1, 2]) {
  Deno.test(`FileBlockStore: a version ${version} store opens, keeps its blocks and becomes version 3`, async () => {
    await withTempDir(async (directory) => {
      const blockBytes = 64 * 1024;
      let store = await open(directory, 4, blockBytes);
      await store.writeBlock(ref(1), filled(1, blockBytes));
      await store.close();
      // What the older version left: its header, and no delta.blk.
      const indexPath = `${directory}/${INDEX_FILE_NAME}`;
      for (const offset of [0, 512]) {
        await patchFile(indexPath, offset, 36, (header) => {
          const view = new DataView(header.buffer);
          assertNode.equal(view.getUint32(8, true), 3);
          view.setUint32(8, version, true);
          view.setUint32(32, crc32(header.subarray(0, 32)), true);
        });
      }
      await Deno.remove(`${directory}/${DELTA_FILE_NAME}`);
      store = await open(directory, 4, blockBytes);
      await assertBlock(store, ref(1), filled(1, blockBytes));
      // It makes packed deltas at once.
      await store.copyBlock(ref(1), ref(2), 0, filled(2, 8));
      assertNode.equal(store.usedBlocks(), 2);
      await store.close();
      const header = await Deno.readFile(indexPath);
      assertNode.equal(new DataView(header.buffer).getUint32(8, true), 3);
      assertNode.equal(new DataView(header.buffer).getUint32(512 + 8, true), 3);
      store = await open(directory, 4, blockBytes);
      await assertBlock(store, ref(2), patched(filled(1, blockBytes), 0, filled(2, 8)));
      await store.close();
    });
  });
}

/**
 * Random copies, patches, whole writes, deletes, flushes and reopens on a
 * store of `blockBytes` blocks, checked step by step against
 * MemoryBlockStore; patches are up to `patchBytesMax` long.
 */
async function differential(
  blockBytes: number,
  steps: number,
  patchBytesMax: number,
  seed: number,
) {
  await withTempDir(async (directory) => {
    const prng = new Prng(seed);
    const refs = 10;
    // Every live delta keeps at most one more slot in use.
    const numBlocks = 2 * refs + 2;
    const memory = new MemoryBlockStore({ blockSizeBytes: blockBytes, numBlocks });
    let file = await open(directory, numBlocks, blockBytes);
    const same = (what: string, op: (store: BlockStore) => Promise<unknown>) =>
      assertSameOutcome(what, file, memory, op);
    let packedSeen = false;
    const flushes: Promise<void>[] = [];
    let pending = 0;
    for (let step = 0; step < steps; step++) {
      const target = ref(prng.nextInt(refs));
      const choice = prng.nextInt(20);
      const offset = prng.nextInt(blockBytes);
      const data = filled(step, prng.nextInt(Math.min(patchBytesMax, blockBytes - offset) + 1));
      if (choice < 2) {
        await same(`write ${step}`, (s) => s.writeBlock(target, filled(step, blockBytes)));
      } else if (choice < 9) {
        const source = ref(prng.nextInt(refs));
        await same(`copy ${step}`, (s) => s.copyBlock(source, target, offset, data));
      } else if (choice < 12) {
        await same(`patch ${step}`, (s) => s.writeBlockRange(target, offset, data));
      } else if (choice < 15) {
        await same(`delete ${step}`, (s) => s.deleteBlock(target));
      } else if (choice < 16) {
        await file.flush();
      } else if (choice < 17) {
        // As torusd does: a flush (and its merges) runs while more writes come.
        pending++;
        flushes.push(file.flush().finally(() => pending--));
      } else {
        await same(`read ${step}`, (s) => s.readBlock(target));
      }
      if (step % 400 === 399 || step === steps - 1) {
        await Promise.all(flushes.splice(0));
        await file.close();
        file = await open(directory, numBlocks, blockBytes);
      }
      // A packed delta takes no slot; a delta keeps at most one more slot
      // (its lender) in use, a packed one at most half a heap slot more; a
      // merge in flight keeps the slot it leaves until its flush ends.
      assertNode.ok(file.usedBlocks() >= memory.usedBlocks() - file.deltaBlocks());
      if (pending === 0) {
        assertNode.ok(file.usedBlocks() <= memory.usedBlocks() + 2 * file.deltaBlocks());
      }
      packedSeen ||= file.usedBlocks() < memory.usedBlocks();
    }
    // Blocks of 16 KiB or less make no packed deltas; larger ones do.
    assertNode.equal(packedSeen, packedDeltaSectorsMax(blockBytes) > 0);
    await file.flush();
    for (const r of memory.blockRefs()) await same(`final ${r}`, (s) => s.readBlock(r));
    assertNode.deepEqual(
      file.blockRefs().map(String).sort(),
      memory.blockRefs().map(String).sort(),
    );
    await file.close();
    await memory.close();
  });
}

Deno.test("FileBlockStore: random copies, writes, deletes and flushes match MemoryBlockStore across reopens", async () => {
  await differential(BLOCK, 2000, 2 * SECTOR, 0xde17a);
});

Deno.test("FileBlockStore: the same with blocks longer than a write piece and copies long enough for the kernel", async () => {
  // 256 KiB blocks: whole-block writes go to the I/O thread in
  // DATA_WRITE_PIECE_BYTES pieces, and long runs are copied by
  // copy_file_range, short ones through memory.
  assertNode.ok(256 * 1024 > DATA_WRITE_PIECE_BYTES);
  await differential(256 * 1024, 300, 96 * 1024, 0x64b10c);
});

Deno.test("FileBlockStore: the same with 512 KiB blocks (torusd's default) and patches of up to 3 sectors: packed deltas", async () => {
  // Packed deltas grow a sector or three at a time, up to 112 sectors;
  // merges and moves gather their sectors back from the heap.
  assertNode.equal(packedDeltaSectorsMax(512 * 1024), 112);
  await differential(512 * 1024, 700, 3 * SECTOR, 0x5e7e47);
});

Deno.test("FileBlockStore: the same with 64 KiB blocks: packed deltas, deltas with slots, and moves between them", async () => {
  // A packed delta of 64 KiB blocks owns at most 3 sectors, a delta with a
  // slot at most 8: patches of up to 5 sectors cross both limits.
  assertNode.equal(packedDeltaSectorsMax(64 * 1024), 3);
  await differential(64 * 1024, 1500, 20 * 1024, 0x64c0de);
});

// ---------------------------------------------------------------------------
// Packed deltas: copies of a few sectors that take no slot of their own

/** 64 KiB blocks: 16 sectors, a packed delta owns at most 3, a delta with a slot at most 8. */
const PACKED_BLOCK = 64 * 1024;

function openPacked(directory: string, numBlocks: number) {
  return open(directory, numBlocks, PACKED_BLOCK);
}

Deno.test("FileBlockStore: copies of a few sectors are packed deltas sharing one heap slot", async () => {
  await withTempDir(async (directory) => {
    let store = await openPacked(directory, 6);
    const base = filled(1, PACKED_BLOCK);
    await store.writeBlock(ref(1), base);
    await store.copyBlock(ref(1), ref(2), 5 * SECTOR + 7, filled(2, 8));
    // ref 1, and the heap slot holding ref 2's one sector.
    assertNode.equal(store.usedBlocks(), 2);
    await store.copyBlock(ref(1), ref(3), 0, filled(3, 2 * SECTOR));
    await store.copyBlock(ref(2), ref(4), 15 * SECTOR, filled(4, SECTOR)); // a copy of a packed delta
    assertNode.equal(store.usedBlocks(), 2);
    assertNode.equal(store.deltaBlocks(), 3);
    const want2 = patched(base, 5 * SECTOR + 7, filled(2, 8));
    const want3 = patched(base, 0, filled(3, 2 * SECTOR));
    const want4 = patched(want2, 15 * SECTOR, filled(4, SECTOR));
    for (let round = 0; round < 2; round++) {
      await assertBlock(store, ref(1), base);
      await assertBlock(store, ref(2), want2);
      await assertBlock(store, ref(3), want3);
      await assertBlock(store, ref(4), want4);
      await store.close();
      store = await openPacked(directory, 6);
      assertNode.equal(store.usedBlocks(), 2);
      assertNode.equal(store.deltaBlocks(), 3);
    }
    // Deleting them frees the heap slot.
    for (const i of [2, 3, 4]) await store.deleteBlock(ref(i));
    assertNode.equal(store.usedBlocks(), 1);
    await store.close();
    store = await openPacked(directory, 6);
    assertNode.equal(store.usedBlocks(), 1);
    await store.close();
  });
});

Deno.test("FileBlockStore: a packed delta that outgrows its record moves to a slot: a delta there, or whole", async () => {
  await withTempDir(async (directory) => {
    let store = await openPacked(directory, 6);
    let want = filled(1, PACKED_BLOCK);
    await store.writeBlock(ref(1), want);
    await store.writeBlock(ref(9), filled(9, PACKED_BLOCK));
    const patch = async (target: BlockRef, sector: number, seed: number) => {
      await store.writeBlockRange(target, sector * SECTOR + 1, filled(seed, 10));
    };
    await store.copyBlock(ref(1), ref(2), 0, filled(2, 10));
    want = patched(want, 0, filled(2, 10));
    for (const sector of [1, 2, 1]) {
      await patch(ref(2), sector, 20 + sector);
      want = patched(want, sector * SECTOR + 1, filled(20 + sector, 10));
    }
    assertNode.equal(store.usedBlocks(), 3); // refs 1 and 9, and the heap slot
    await patch(ref(2), 3, 23); // a fourth sector: a delta with a slot of its own
    want = patched(want, 3 * SECTOR + 1, filled(23, 10));
    assertNode.equal(store.usedBlocks(), 3); // the heap slot was freed
    assertNode.equal(store.deltaBlocks(), 1);
    await assertBlock(store, ref(2), want);
    // A packed delta that would own more than half the block becomes whole.
    const nine = filled(9, PACKED_BLOCK);
    await store.copyBlock(ref(9), ref(3), 0, filled(3, SECTOR));
    await store.writeBlockRange(ref(3), SECTOR + 1, filled(30, 8 * SECTOR));
    const want3 = patched(patched(nine, 0, filled(3, SECTOR)), SECTOR + 1, filled(30, 8 * SECTOR));
    assertNode.equal(store.deltaBlocks(), 1);
    await assertBlock(store, ref(3), want3);
    await store.close();
    store = await openPacked(directory, 6);
    await assertBlock(store, ref(2), want);
    await assertBlock(store, ref(3), want3);
    assertNode.equal(store.usedBlocks(), 4);
    await store.close();
  });
});

Deno.test("FileBlockStore: a packed delta is merged into its deleted lender's slot, freeing its heap sectors", async () => {
  await withTempDir(async (directory) => {
    let store = await openPacked(directory, 4);
    const base = filled(1, PACKED_BLOCK);
    await store.writeBlock(ref(1), base);
    await store.copyBlock(ref(1), ref(2), 3 * SECTOR, filled(2, 2 * SECTOR));
    await store.flush();
    await store.deleteBlock(ref(1));
    assertNode.equal(store.usedBlocks(), 2); // the lent slot and the heap slot
    await store.flush();
    assertNode.equal(store.deltaBlocks(), 0);
    assertNode.equal(store.usedBlocks(), 1);
    const want = patched(base, 3 * SECTOR, filled(2, 2 * SECTOR));
    await assertBlock(store, ref(2), want);
    await store.close();
    store = await openPacked(directory, 4);
    assertNode.equal(store.usedBlocks(), 1);
    assertNode.equal(store.deltaBlocks(), 0);
    await assertBlock(store, ref(2), want);
    await store.close();
  });
});

Deno.test("FileBlockStore: a copy of a delta whose lender is deleted brings the lender up to date and borrows from it", async () => {
  await withTempDir(async (directory) => {
    let store = await openPacked(directory, 6);
    const base = filled(1, PACKED_BLOCK);
    await store.writeBlock(ref(1), base);
    await store.flush();
    const lent = await slotOf(directory, PACKED_BLOCK, ref(1));
    // ref 2 owns 3 sectors, as many as a packed delta may.
    await store.copyBlock(ref(1), ref(2), 2 * SECTOR, filled(2, 3 * SECTOR));
    const want2 = patched(base, 2 * SECTOR, filled(2, 3 * SECTOR));
    await store.flush();
    await store.deleteBlock(ref(1)); // not flushed: no merge yet
    // A copy changing one more sector would own 4 with ref 2's own: too many
    // for a packed delta. Caught up, ref 1's slot holds ref 2 whole and the
    // copy owns its one sector only.
    await store.copyBlock(ref(2), ref(3), 9 * SECTOR, filled(3, SECTOR));
    const want3 = patched(want2, 9 * SECTOR, filled(3, SECTOR));
    assertNode.equal(store.deltaBlocks(), 2);
    assertNode.equal(store.usedBlocks(), 2, "the lent slot and one heap slot: no slot for ref 3");
    await assertBlock(store, ref(2), want2);
    await assertBlock(store, ref(3), want3);
    await store.flush();
    assertNode.equal(store.usedBlocks(), 2, "two borrowers: no merge");
    const data = await Deno.readFile(`${directory}/${DATA_FILE_NAME}`);
    assertNode.deepEqual(
      data.subarray(lent * PACKED_BLOCK, (lent + 1) * PACKED_BLOCK),
      want2,
      "the lender holds ref 2 whole",
    );
    await store.close();

    store = await openPacked(directory, 6);
    assertNode.equal(store.deltaBlocks(), 2);
    await assertBlock(store, ref(2), want2);
    await assertBlock(store, ref(3), want3);
    // The next session's copy does it again: ref 4 owns only its own sector.
    await store.deleteBlock(ref(2));
    await store.copyBlock(ref(3), ref(4), 15 * SECTOR, filled(4, SECTOR));
    const want4 = patched(want3, 15 * SECTOR, filled(4, SECTOR));
    await store.writeBlockRange(ref(4), 0, filled(5, 2 * SECTOR));
    const want4b = patched(want4, 0, filled(5, 2 * SECTOR));
    assertNode.equal(store.usedBlocks(), 2, "ref 4 owns 3 sectors: still packed");
    await assertBlock(store, ref(3), want3);
    await assertBlock(store, ref(4), want4b);
    await store.deleteBlock(ref(3));
    await store.flush();
    assertNode.equal(store.deltaBlocks(), 0, "merged into the lender");
    assertNode.equal(store.usedBlocks(), 1);
    await assertBlock(store, ref(4), want4b);
    await store.close();

    store = await openPacked(directory, 6);
    assertNode.equal(store.usedBlocks(), 1);
    await assertBlock(store, ref(4), want4b);
    await store.close();
  });
});

Deno.test("FileBlockStore: a copy of a delta whose lender is alive or lent to others copies the delta's own sectors", async () => {
  for (const lenderState of ["alive", "lent twice"] as const) {
    const store = await openTemp(PACKED_BLOCK, 6);
    const base = filled(1, PACKED_BLOCK);
    await store.writeBlock(ref(1), base);
    await store.copyBlock(ref(1), ref(2), 2 * SECTOR, filled(2, 3 * SECTOR));
    const want2 = patched(base, 2 * SECTOR, filled(2, 3 * SECTOR));
    // The other block reading from ref 1's slot: ref 1 itself, or a second delta of it.
    let other = { ref: ref(1), want: base };
    if (lenderState === "lent twice") {
      await store.copyBlock(ref(1), ref(5), 12 * SECTOR, filled(5, SECTOR));
      other = { ref: ref(5), want: patched(base, 12 * SECTOR, filled(5, SECTOR)) };
      await store.deleteBlock(ref(1));
    }
    await store.copyBlock(ref(2), ref(3), 9 * SECTOR, filled(3, SECTOR));
    const want3 = patched(want2, 9 * SECTOR, filled(3, SECTOR));
    // ref 3 owns 4 sectors: a delta with a slot of its own.
    assertNode.equal(store.usedBlocks(), 3, lenderState);
    await assertBlock(store, other.ref, other.want);
    await assertBlock(store, ref(2), want2);
    await assertBlock(store, ref(3), want3);
    await store.close();
  }
});

Deno.test("FileBlockStore: when the packed delta records run out, copies take slots of their own", async () => {
  await withTempDir(async (directory) => {
    // 4 slots: 2 packed delta records.
    const store = await openPacked(directory, 4);
    const base = filled(1, PACKED_BLOCK);
    await store.writeBlock(ref(1), base);
    for (const i of [2, 3]) await store.copyBlock(ref(1), ref(i), 0, filled(i, 8));
    assertNode.equal(store.usedBlocks(), 2);
    await store.copyBlock(ref(1), ref(4), 0, filled(4, 8));
    assertNode.equal(store.usedBlocks(), 3);
    assertNode.equal(store.deltaBlocks(), 3);
    for (const i of [2, 3, 4]) await assertBlock(store, ref(i), patched(base, 0, filled(i, 8)));
    await store.close();
  });
});

Deno.test("FileBlockStore: a packed delta that needs a slot when none is free fails with OutOfSpaceError and keeps its bytes", async () => {
  await withTempDir(async (directory) => {
    const store = await openPacked(directory, 2);
    const base = filled(1, PACKED_BLOCK);
    await store.writeBlock(ref(1), base);
    await store.copyBlock(ref(1), ref(2), 0, filled(2, 3 * SECTOR));
    assertNode.equal(store.usedBlocks(), 2);
    await assertNode.rejects(
      store.writeBlockRange(ref(2), 10 * SECTOR, filled(3, 8)),
      OutOfSpaceError,
    );
    await assertBlock(store, ref(2), patched(base, 0, filled(2, 3 * SECTOR)));
    // Within the sectors it owns, it still writes.
    await store.writeBlockRange(ref(2), SECTOR, filled(4, 8));
    await assertBlock(
      store,
      ref(2),
      patched(patched(base, 0, filled(2, 3 * SECTOR)), SECTOR, filled(4, 8)),
    );
    await store.close();
  });
});

Deno.test("FileBlockStore: a packed delta record with a torn placement frees that record only", async () => {
  await withTempDir(async (directory) => {
    let store = await openPacked(directory, 6);
    const base = filled(1, PACKED_BLOCK);
    await store.writeBlock(ref(1), base);
    await store.copyBlock(ref(1), ref(2), 0, filled(2, 8)); // record 0 of delta.blk
    await store.copyBlock(ref(1), ref(3), 0, filled(3, 8)); // record 1
    await store.close();
    const recordSize = indexRecordSizeBytes(PACKED_BLOCK);
    // The last bytes of record 0: its placement and the placement CRC.
    await patchFile(`${directory}/${DELTA_FILE_NAME}`, recordSize - 24, 24, (bytes) => {
      assertNode.ok(bytes.some((b) => b !== 0));
      bytes[bytes.findIndex((b) => b !== 0)]! ^= 0x10;
    });
    store = await openPacked(directory, 6);
    await assertNode.rejects(store.readBlock(ref(2)), BlockNotFoundError);
    await assertBlock(store, ref(1), base);
    await assertBlock(store, ref(3), patched(base, 0, filled(3, 8)));
    await store.close();
  });
});

Deno.test("FileBlockStore: a packed delta whose heap sectors a newer block took is dropped at open", async () => {
  await withTempDir(async (directory) => {
    let store = await openPacked(directory, 4);
    const base = filled(1, PACKED_BLOCK);
    await store.writeBlock(ref(1), base);
    await store.copyBlock(ref(1), ref(2), 0, filled(2, 8));
    await store.flush();
    // What a crash can leave: ref 2's record, after its heap slot was freed
    // and reused by a whole block, when the zeroed record never reached the disk.
    const stale = await Deno.readFile(`${directory}/${DELTA_FILE_NAME}`);
    await store.deleteBlock(ref(2));
    await store.writeBlock(ref(3), filled(3, PACKED_BLOCK));
    assertNode.equal(store.usedBlocks(), 2);
    await store.close();
    await Deno.writeFile(`${directory}/${DELTA_FILE_NAME}`, stale);
    for (let round = 0; round < 2; round++) {
      store = await openPacked(directory, 4);
      await assertNode.rejects(store.readBlock(ref(2)), BlockNotFoundError);
      await assertBlock(store, ref(1), base);
      await assertBlock(store, ref(3), filled(3, PACKED_BLOCK));
      assertNode.equal(store.usedBlocks(), 2);
      assertNode.equal(store.deltaBlocks(), 0);
      await store.close();
    }
    // The stale record was zeroed.
    assertNode.ok((await Deno.readFile(`${directory}/${DELTA_FILE_NAME}`)).every((b) => b === 0));
  });
});

Deno.test("FileBlockStore: shrinking is refused while packed deltas are stored", async () => {
  await withTempDir(async (directory) => {
    let store = await openPacked(directory, 8);
    await store.writeBlock(ref(1), filled(1, PACKED_BLOCK));
    await store.copyBlock(ref(1), ref(2), 0, filled(2, 8));
    await store.close();
    await assertNode.rejects(
      openPacked(directory, 4),
      (error) => error instanceof TorusError && /packed copies/.test(error.message),
    );
    store = await openPacked(directory, 8);
    await store.deleteBlock(ref(1));
    await store.flush(); // merges ref 2
    await store.close();
    store = await openPacked(directory, 4);
    await assertBlock(store, ref(2), patched(filled(1, PACKED_BLOCK), 0, filled(2, 8)));
    await store.close();
    // The delta file shrank with the store.
    const { size } = await Deno.stat(`${directory}/${DELTA_FILE_NAME}`);
    assertNode.equal(size, 2 * indexRecordSizeBytes(PACKED_BLOCK));
  });
});

Deno.test("FileBlockStore: a flush merging many deltas lets writes and deletes in between, and merges only what did not change", async () => {
  await withTempDir(async (directory) => {
    const blockBytes = 512 * 1024;
    const count = 24;
    let store = await open(directory, 2 * count + 8, blockBytes);
    // 100 of 128 sectors each: 400 KiB of own sectors per delta, more
    // than one slice of merging for all of them together.
    const patch = (i: number) => filled(1000 + i, 100 * SECTOR);
    const want = new Map<number, Uint8Array>();
    for (let i = 0; i < count; i++) {
      await store.writeBlock(ref(i), filled(i, blockBytes));
      await store.copyBlock(ref(i), ref(100 + i), 7 * SECTOR, patch(i));
      want.set(100 + i, patched(filled(i, blockBytes), 7 * SECTOR, patch(i)));
    }
    assertNode.equal(store.deltaBlocks(), count);
    await store.flush();
    const lastLender = await slotOf(directory, blockBytes, ref(count - 1));
    for (let i = 0; i < count; i++) await store.deleteBlock(ref(i));
    // The flush copies a first slice of merges, then yields to these:
    const flushed = store.flush();
    await store.writeBlockRange(ref(100), 7 * SECTOR, filled(7, 16)); // merged already: undone
    want.set(100, patched(want.get(100)!, 7 * SECTOR, filled(7, 16)));
    await store.deleteBlock(ref(100 + count - 1)); // not copied yet: skipped
    want.delete(100 + count - 1);
    await flushed;
    // The last delta's sectors were never copied into its lender's slot.
    const data = await Deno.readFile(`${directory}/${DATA_FILE_NAME}`);
    const at = lastLender * blockBytes + 7 * SECTOR;
    assertNode.deepEqual(
      data.subarray(at, at + 64),
      filled(count - 1, blockBytes).subarray(7 * SECTOR, 7 * SECTOR + 64),
    );
    assertNode.equal(store.deltaBlocks(), 1);
    await store.flush(); // the written one now
    assertNode.equal(store.deltaBlocks(), 0);
    assertNode.equal(store.usedBlocks(), count - 1);
    for (let round = 0; round < 2; round++) {
      for (const [i, bytes] of want) {
        assertNode.deepEqual((await store.readBlock(ref(i))).data, bytes, `${ref(i)}`);
      }
      await store.close();
      store = await open(directory, 2 * count + 8, blockBytes);
    }
    await store.close();
  });
});

/**
 * Asserts that two byte arrays are equal, naming the first difference: a
 * failing deepEqual of two 512 KiB arrays spends minutes building its diff.
 */
function assertBytes(actual: Uint8Array, expected: Uint8Array, what = "bytes"): void {
  assertNode.equal(actual.length, expected.length, `${what}: length`);
  const at = actual.findIndex((byte, i) => byte !== expected[i]);
  assertNode.equal(at, -1, `${what}: first difference at byte ${at}`);
}

Deno.test("FileBlockStore: whole 512 KiB blocks are written and read on the I/O thread", async () => {
  assertNode.ok(BIG_BLOCK >= IO_THREAD_MIN_BYTES);
  const store = await openTemp(BIG_BLOCK, 4, "pread-thread");
  try {
    const data = new Prng(0x1017).fill(new Uint8Array(BIG_BLOCK));
    const before = { ...ioThreadStats };
    assertNode.deepEqual(await store.writeBlock(ref(1), data), sectorCrcs(data, BIG_BLOCK));
    const into = new Uint8Array(BIG_BLOCK);
    const read = await store.readBlock(ref(1), undefined, undefined, into);
    assertNode.ok(read.data === into, "read into the given buffer");
    assertBytes(into, data);
    // Half a block is long enough too.
    const half = new Uint8Array(BIG_BLOCK / 2);
    await store.readBlock(
      ref(1),
      { offsetBytes: BIG_BLOCK / 2, lengthBytes: BIG_BLOCK / 2 },
      undefined,
      half,
    );
    assertBytes(half, data.subarray(BIG_BLOCK / 2));
    assertNode.equal(ioThreadStats.jobs - before.jobs, 3);
    assertNode.equal(ioThreadStats.bytes - before.bytes, 2.5 * BIG_BLOCK);
  } finally {
    await store.close();
  }
});

Deno.test("FileBlockStore: a read that finds the page cache stays off the I/O thread; one that misses it goes there", async () => {
  await withTempDir(async (directory) => {
    const store = await open(directory, 4, BIG_BLOCK);
    try {
      const data = new Prng(0x101d).fill(new Uint8Array(BIG_BLOCK));
      await store.writeBlock(ref(1), data);
      const ranges = [
        { offsetBytes: 0, lengthBytes: BIG_BLOCK },
        { offsetBytes: BIG_BLOCK / 2, lengthBytes: BIG_BLOCK / 2 },
        { offsetBytes: 8192, lengthBytes: 4096 },
      ];
      const read = async (round: number) => {
        const range = ranges[round % ranges.length]!;
        const into = new Uint8Array(range.lengthBytes);
        const result = await store.readBlock(ref(1), range, undefined, into);
        assertNode.ok(result.data === into, "read into the given buffer");
        const { offsetBytes, lengthBytes } = range;
        assertBytes(into, data.subarray(offsetBytes, offsetBytes + lengthBytes), `round ${round}`);
      };
      // Cached (just written): every read is served here.
      const readNow = (round: number) => {
        const range = ranges[round % ranges.length]!;
        const into = new Uint8Array(range.lengthBytes);
        const result = store.readBlockNow(ref(1), range, into);
        if (result === null) return false;
        assertNode.ok(result.data === into, "read into the given buffer");
        const { offsetBytes, lengthBytes } = range;
        assertBytes(into, data.subarray(offsetBytes, offsetBytes + lengthBytes), `round ${round}`);
        return true;
      };
      let jobs = ioThreadStats.jobs;
      for (let round = 0; round < ranges.length; round++) await read(round);
      for (let round = 0; round < ranges.length; round++) {
        assertNode.ok(readNow(round), `readBlockNow() serves cached round ${round}`);
      }
      assertNode.equal(ioThreadStats.jobs - jobs, 0, "cached reads stay here");
      // Evicted: a read waits for the disk on the thread, whatever its length.
      // The kernel's readahead, started by the read's own attempt, may bring
      // the data in before it gives up, so not every round goes there.
      jobs = ioThreadStats.jobs;
      for (let round = 0; round < 12; round++) {
        await evictData(directory);
        await read(round);
      }
      assertNode.ok(ioThreadStats.jobs - jobs >= 1, "reads of evicted data go to the thread");
      // readBlockNow() declines them (the same readahead may let some through).
      let declined = 0;
      for (let round = 0; round < 12; round++) {
        await evictData(directory);
        if (!readNow(round)) declined++;
      }
      assertNode.ok(declined >= 1, "readBlockNow() declines reads that would wait for the disk");
    } finally {
      await store.close();
    }
  });
});

Deno.test("FileBlockStore: while a whole-block write is on the I/O thread, the block reads, copies, patches and deletes as after it", async () => {
  const store = await openTemp(BIG_BLOCK, 8);
  try {
    const prng = new Prng(0x1018);
    const old = prng.fill(new Uint8Array(BIG_BLOCK));
    const next = prng.fill(new Uint8Array(BIG_BLOCK));
    await store.writeBlock(ref(1), old);
    // A read started while the replacing write is in flight sees the new block.
    let writing = store.writeBlock(ref(1), next);
    const range = { offsetBytes: 0, lengthBytes: 4096 };
    assertNode.equal(store.readBlockNow(ref(1), range, new Uint8Array(4096)), null, "not at once");
    assertBytes((await store.readBlock(ref(1))).data, next);
    await writing;
    // So does a copy, and a patch lands on the new block, not the replaced one.
    writing = store.writeBlock(ref(1), old);
    const copied = store.copyBlock(ref(1), ref(2), 0, new Uint8Array([9]));
    const patched = store.writeBlockRange(ref(1), 1, new Uint8Array([8]));
    await Promise.all([writing, copied, patched]);
    const wantCopy = old.slice();
    wantCopy[0] = 9;
    assertBytes((await store.readBlock(ref(2))).data, wantCopy);
    const wantPatched = old.slice();
    wantPatched[1] = 8;
    assertBytes((await store.readBlock(ref(1))).data, wantPatched);
    // A delete issued during the write removes the written block.
    const used = store.usedBlocks();
    writing = store.writeBlock(ref(3), next);
    assertNode.equal(await store.deleteBlock(ref(3)), true);
    await writing;
    assertNode.equal(await store.hasBlock(ref(3)), false);
    assertNode.equal(store.usedBlocks(), used, "the slot of the deleted block is free");
  } finally {
    await store.close();
  }
});

Deno.test("FileBlockStore: a read on the I/O thread that an in-place write overtakes is read again, never torn", async () => {
  const store = await openTemp(BIG_BLOCK, 4, "pread-thread");
  try {
    const prng = new Prng(0x1019);
    await store.writeBlock(ref(1), prng.fill(new Uint8Array(BIG_BLOCK)));
    for (let round = 0; round < 20; round++) {
      const into = new Uint8Array(BIG_BLOCK);
      const reading = store.readBlock(ref(1), undefined, undefined, into);
      // In place, while the thread copies: every sector of the block changes.
      const fresh = prng.fill(new Uint8Array(BIG_BLOCK));
      await store.writeBlockRange(ref(1), 0, fresh);
      const read = await reading;
      assertBytes(read.data, fresh, `round ${round}`);
      assertNode.deepEqual(read.sectorCrcs, sectorCrcs(fresh, BIG_BLOCK));
    }
  } finally {
    await store.close();
  }
});

Deno.test("FileBlockStore: close() waits for writes on the I/O thread and makes them durable", async () => {
  await withTempDir(async (directory) => {
    const prng = new Prng(0x101a);
    const blocks = [0, 1, 2].map(() => prng.fill(new Uint8Array(BIG_BLOCK)));
    let store = await open(directory, 4, BIG_BLOCK);
    const writes = blocks.map((data, i) => store.writeBlock(ref(i), data));
    await store.close();
    await Promise.all(writes);
    store = await open(directory, 4, BIG_BLOCK);
    try {
      for (const [i, data] of blocks.entries()) {
        assertBytes((await store.readBlock(ref(i))).data, data);
      }
    } finally {
      await store.close();
    }
  });
});

Deno.test("FileBlockStore: with no free slot, a whole-block rewrite goes in place", async () => {
  const store = await openTemp(BIG_BLOCK, 2);
  try {
    const prng = new Prng(0x101b);
    await store.writeBlock(ref(1), prng.fill(new Uint8Array(BIG_BLOCK)));
    await store.writeBlock(ref(2), prng.fill(new Uint8Array(BIG_BLOCK)));
    assertNode.equal(store.usedBlocks(), 2);
    const data = prng.fill(new Uint8Array(BIG_BLOCK));
    await store.writeBlock(ref(1), data);
    assertBytes((await store.readBlock(ref(1))).data, data);
    assertNode.equal(store.usedBlocks(), 2);
  } finally {
    await store.close();
  }
});

Deno.test("FileBlockStore: a corrupt sector read on the I/O thread throws BlockCorruptError", async () => {
  await withTempDir(async (directory) => {
    const data = new Prng(0x101c).fill(new Uint8Array(BIG_BLOCK));
    let store = await open(directory, 4, BIG_BLOCK);
    await store.writeBlock(ref(1), data);
    await store.close();
    const slot = await slotOf(directory, BIG_BLOCK, ref(1));
    await patchFile(
      `${directory}/${DATA_FILE_NAME}`,
      slot * BIG_BLOCK + 77 * 4096 + 5,
      1,
      (bytes) => bytes[0] = bytes[0]! ^ 0x01,
    );
    const corrupt = (error: Error) =>
      error instanceof BlockCorruptError && /sector 77 /.test(error.message);
    // Read from the page cache (patched just now).
    store = await open(directory, 4, BIG_BLOCK);
    try {
      const jobs = ioThreadStats.jobs;
      await assertNode.rejects(
        store.readBlock(ref(1), undefined, undefined, new Uint8Array(BIG_BLOCK)),
        corrupt,
      );
      assertNode.equal(ioThreadStats.jobs - jobs, 0, "read from the page cache");
    } finally {
      await store.close();
    }
    store = await open(directory, 4, BIG_BLOCK, "pread-thread");
    try {
      const jobs = ioThreadStats.jobs;
      await assertNode.rejects(
        store.readBlock(ref(1), undefined, undefined, new Uint8Array(BIG_BLOCK)),
        corrupt,
      );
      assertNode.equal(ioThreadStats.jobs - jobs, 1, "read on the thread");
      // The sectors before it still read.
      const head = new Uint8Array(IO_THREAD_MIN_BYTES);
      await store.readBlock(ref(1), { offsetBytes: 0, lengthBytes: head.length }, undefined, head);
      assertBytes(head, data.subarray(0, head.length));
    } finally {
      await store.close();
    }
  });
});
