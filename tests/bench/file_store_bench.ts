/**
 * Compares the I/O mechanisms of the `file` BlockStore on one store:
 * synchronous FFI `pread`/`pwrite`, a `MAP_SHARED` mmap, and `Deno.FsFile`
 * `seekSync` + `readSync`/`writeSync`. The figures and their reading are in
 * `Documentation/storage.md`.
 *
 * ```
 * deno run -A tests/bench/file_store_bench.ts [--io=pread,mmap,fsfile] [--size=1GiB]
 *   [--block=512KiB] [--ops=20000] [--rounds=2] [--dir=PATH]
 * ```
 *
 * Every phase runs against the page cache (the machine has far more memory
 * than the store), except the flushes, which write to the disk.
 *
 * @module
 */
import { BlockRef, BlockType } from "../../lib/core/block_ref.ts";
import { crc32 } from "../../lib/core/crc32.ts";
import { Prng } from "../../lib/prng.ts";
import { formatSize, parseSize } from "../../lib/size.ts";
import { FileBlockStore, type FileBlockStoreIo } from "../../lib/storage/file_block_store.ts";

/** Bytes of a small random I/O. */
const SMALL_IO_BYTES = 4096;
/** Distinct random buffers written round-robin as whole blocks. */
const BUFFER_POOL_SIZE = 16;
/** Single-write flushes timed for the latency of a small flush. */
const SMALL_FLUSH_SAMPLES = 20;

interface Options {
  io: FileBlockStoreIo[];
  sizeBytes: number;
  blockSizeBytes: number;
  ops: number;
  rounds: number;
  dir: string | undefined;
}

function parseArgs(args: string[]): Options {
  const options: Options = {
    io: ["pread", "mmap", "fsfile"],
    sizeBytes: 1024 ** 3,
    blockSizeBytes: 512 * 1024,
    ops: 20_000,
    rounds: 2,
    dir: undefined,
  };
  for (const arg of args) {
    const [name, value = ""] = arg.replace(/^--/, "").split("=", 2) as [string, string?];
    if (name === "io") options.io = value.split(",") as FileBlockStoreIo[];
    else if (name === "size") options.sizeBytes = parseSize(value);
    else if (name === "block") options.blockSizeBytes = parseSize(value);
    else if (name === "ops") options.ops = Number(value);
    else if (name === "rounds") options.rounds = Number(value);
    else if (name === "dir") options.dir = value;
    else throw new TypeError(`Unknown argument ${arg}`);
  }
  return options;
}

function ref(index: number): BlockRef {
  return new BlockRef(1, BlockType.data, 1, index + 1);
}

type Row = Record<string, string>;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function timed(body: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await body();
  return performance.now() - start;
}

function rate(ms: number, ops: number, bytesPerOp: number): string {
  const us = (ms * 1000) / ops;
  const mbs = (ops * bytesPerOp) / (ms / 1000) / 1e6;
  return `${us.toFixed(1)} µs/op, ${Math.round((ops / ms) * 1000)} op/s, ${Math.round(mbs)} MB/s`;
}

async function benchOne(io: FileBlockStoreIo, options: Options, root: string): Promise<Row> {
  const { sizeBytes, blockSizeBytes, ops } = options;
  const directory = `${root}/${io}-${crypto.randomUUID()}`;
  const row: Row = { io };
  const prng = new Prng(0xbe4c);
  const pool = Array.from(
    { length: BUFFER_POOL_SIZE },
    () => prng.fill(new Uint8Array(blockSizeBytes)),
  );
  const small = prng.fill(new Uint8Array(SMALL_IO_BYTES));
  let store!: FileBlockStore;
  row["open (create)"] = `${
    (await timed(async () => {
      store = await FileBlockStore.open({ directory, blockSizeBytes, sizeBytes, io });
    })).toFixed(0)
  } ms`;
  const numBlocks = store.numBlocks();
  try {
    const order = Array.from({ length: numBlocks }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = prng.nextInt(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const fullWrite = await timed(async () => {
      for (const i of order) await store.writeBlock(ref(i), pool[i % BUFFER_POOL_SIZE]!);
    });
    row["block write"] = rate(fullWrite, numBlocks, blockSizeBytes);
    row["flush after full write"] = `${(await timed(() => store.flush())).toFixed(0)} ms`;
    const fullRead = await timed(async () => {
      for (const i of order) await store.readBlock(ref(i));
    });
    row["block read"] = rate(fullRead, numBlocks, blockSizeBytes);

    const sectors = blockSizeBytes / SMALL_IO_BYTES;
    const targets = Array.from(
      { length: ops },
      () => [prng.nextInt(numBlocks), prng.nextInt(sectors) * SMALL_IO_BYTES] as const,
    );
    const smallWrite = await timed(async () => {
      for (const [i, offset] of targets) await store.writeBlockRange(ref(i), offset, small);
    });
    row["4 KiB writeBlockRange"] = rate(smallWrite, ops, SMALL_IO_BYTES);
    row["flush after 4 KiB writes"] = `${(await timed(() => store.flush())).toFixed(0)} ms`;
    const smallRead = await timed(async () => {
      for (const [i, offset] of targets) {
        await store.readBlock(ref(i), { offsetBytes: offset, lengthBytes: SMALL_IO_BYTES });
      }
    });
    row["4 KiB read"] = rate(smallRead, ops, SMALL_IO_BYTES);

    const flushes: number[] = [];
    for (let n = 0; n < SMALL_FLUSH_SAMPLES; n++) {
      const [i, offset] = targets[n]!;
      await store.writeBlockRange(ref(i), offset, small);
      flushes.push(await timed(() => store.flush()));
    }
    row["flush of one 4 KiB write (median)"] = `${median(flushes).toFixed(2)} ms`;
  } finally {
    await store.close();
  }
  row["reopen (index scan)"] = `${
    (await timed(async () => {
      store = await FileBlockStore.open({ directory, blockSizeBytes, sizeBytes, io });
    })).toFixed(0)
  } ms`;
  await store.close();
  await Deno.remove(directory, { recursive: true });
  return row;
}

async function main(): Promise<void> {
  const options = parseArgs(Deno.args);
  const root = options.dir ?? await Deno.makeTempDir({ prefix: "torus-file-bench-" });
  await Deno.mkdir(root, { recursive: true });
  const block = new Uint8Array(options.blockSizeBytes);
  const crcStart = performance.now();
  for (let i = 0; i < 64; i++) crc32(block);
  const crcMs = performance.now() - crcStart;
  console.log(
    `# file block store: ${formatSize(options.sizeBytes)} store, ${
      formatSize(options.blockSizeBytes)
    } blocks, ${options.ops} small ops; crc32 runs at ${
      Math.round((64 * options.blockSizeBytes) / (crcMs / 1000) / 1e6)
    } MB/s\n`,
  );
  const rows: Row[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const io of options.io) {
      const row = await benchOne(io, options, root);
      rows.push({ round: String(round), ...row });
      console.log(JSON.stringify(rows.at(-1)));
    }
  }
  if (!options.dir) await Deno.remove(root, { recursive: true });
  const columns = Object.keys(rows[0]!);
  console.log(`\n| ${columns.join(" | ")} |`);
  console.log(`|${columns.map(() => "---").join("|")}|`);
  for (const row of rows) console.log(`| ${columns.map((c) => row[c]).join(" | ")} |`);
}

if (import.meta.main) await main();
