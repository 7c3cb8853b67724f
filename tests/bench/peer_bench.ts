/**
 * A quick throughput check of the peer protocol over loopback (not a timed
 * test): 4 KiB range reads and 512 KiB block writes per second, at queue
 * depth 1 and 32, from one `TcpPeerClient` (one connection) to a
 * `PeerServer` serving a store of 512 KiB blocks.
 *
 * ```
 * deno run -A tests/bench/peer_bench.ts [--seconds=3] [--store=memory|file] [--in-process]
 * ```
 *
 * By default the server runs in a child process (client and server each get
 * their own event loop, as between two nodes); `--in-process` runs both in
 * one. `--store=file` serves a `FileBlockStore` in a temporary directory
 * (page cache, no flush) instead of memory.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { BlockRef, BlockType } from "../../lib/core/block_ref.ts";
import { TcpPeerClient } from "../../lib/peer/peer_client.ts";
import { PeerServer } from "../../lib/peer/peer_server.ts";
import { Prng } from "../../lib/prng.ts";
import type { BlockStore } from "../../lib/storage/block_store.ts";
import { FileBlockStore } from "../../lib/storage/file_block_store.ts";
import { MemoryBlockStore } from "../../lib/storage/memory_block_store.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
/** The cluster block size measured: the default. */
const BLOCK_BYTES = 512 * KiB;
/** Blocks written and read (256 MiB). */
const BLOCKS = 512;
/** Bytes of a small read. */
const SMALL_READ_BYTES = 4 * KiB;
/** Queue depths measured. */
const QUEUE_DEPTHS = [1, 32] as const;

async function openStore(kind: string): Promise<{ store: BlockStore; cleanup(): Promise<void> }> {
  if (kind === "memory") {
    const store = new MemoryBlockStore({ blockSizeBytes: BLOCK_BYTES, numBlocks: BLOCKS });
    return { store, cleanup: () => store.close() };
  }
  const root = await Deno.makeTempDir({ prefix: "torus-peer-bench-" });
  const store = await FileBlockStore.open({
    directory: `${root}/block`,
    blockSizeBytes: BLOCK_BYTES,
    sizeBytes: BLOCKS * BLOCK_BYTES,
  });
  return {
    store,
    async cleanup() {
      await store.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

/** Serves a store on an ephemeral port and prints `{"port": N}`; stops at end of stdin. */
async function serve(kind: string): Promise<void> {
  const { store, cleanup } = await openStore(kind);
  const server = PeerServer.listen({ store, port: 0 });
  console.log(JSON.stringify({ port: server.port }));
  for await (const _ of Deno.stdin.readable) {
    // Wait for the parent to close stdin.
  }
  await server.close();
  await cleanup();
}

/** Runs `op` from `depth` workers for `seconds`; returns operations per second. */
async function measure(
  seconds: number,
  depth: number,
  op: (worker: number, i: number) => Promise<void>,
): Promise<number> {
  const deadline = performance.now() + seconds * 1000;
  let count = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: depth }, async (_, worker) => {
    for (let i = 0; performance.now() < deadline; i++) {
      await op(worker, i);
      count++;
    }
  }));
  return count / ((performance.now() - started) / 1000);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "3" },
      store: { type: "string", default: "memory" },
      "in-process": { type: "boolean", default: false },
      serve: { type: "boolean", default: false },
    },
  });
  if (values.store !== "memory" && values.store !== "file") {
    throw new TypeError(`Unknown store ${values.store}: expected memory or file`);
  }
  if (values.serve) return await serve(values.store);
  const seconds = Number(values.seconds);

  let port: number;
  let stop: () => Promise<void>;
  if (values["in-process"]) {
    const { store, cleanup } = await openStore(values.store);
    const server = PeerServer.listen({ store, port: 0 });
    port = server.port;
    stop = async () => {
      await server.close();
      await cleanup();
    };
  } else {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname, "--serve", `--store=${values.store}`],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let line = "";
    while (!line.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the server did not start");
      line += value;
    }
    port = JSON.parse(line.split("\n")[0]!).port;
    stop = async () => {
      await child.stdin.close();
      await reader.cancel();
      await child.status;
    };
  }

  const client = new TcpPeerClient({
    address: `tdp://127.0.0.1:${port}`,
    blockSizeBytes: BLOCK_BYTES,
  });
  const prng = new Prng(42);
  const ref = (index: number) => new BlockRef(1, BlockType.data, 1, index);
  const buffers = Array.from({ length: 8 }, () => prng.fill(new Uint8Array(BLOCK_BYTES)));
  const results: string[] = [];
  try {
    // Fill every block once so reads find them.
    await Promise.all(Array.from({ length: 16 }, async (_, worker) => {
      for (let index = worker; index < BLOCKS; index += 16) {
        await client.writeBlock(ref(index), buffers[index % buffers.length]!);
      }
    }));
    const sectors = BLOCK_BYTES / SMALL_READ_BYTES;
    for (const depth of QUEUE_DEPTHS) {
      const rate = await measure(seconds, depth, async () => {
        const offsetBytes = prng.nextInt(sectors) * SMALL_READ_BYTES;
        await client.readBlock(ref(prng.nextInt(BLOCKS)), {
          offsetBytes,
          lengthBytes: SMALL_READ_BYTES,
        });
      });
      results.push(
        `4 KiB reads    QD${String(depth).padEnd(2)}  ${rate.toFixed(0).padStart(7)} /s  ` +
          `${(rate * SMALL_READ_BYTES / MiB).toFixed(1).padStart(7)} MiB/s  ` +
          `${(1000 * depth / rate).toFixed(3)} ms mean latency`,
      );
    }
    for (const depth of QUEUE_DEPTHS) {
      const rate = await measure(seconds, depth, async (worker, i) => {
        await client.writeBlock(
          ref(prng.nextInt(BLOCKS)),
          buffers[(worker + i) % buffers.length]!,
        );
      });
      results.push(
        `512 KiB writes QD${String(depth).padEnd(2)}  ${rate.toFixed(0).padStart(7)} /s  ` +
          `${(rate * BLOCK_BYTES / MiB).toFixed(1).padStart(7)} MiB/s  ` +
          `${(1000 * depth / rate).toFixed(3)} ms mean latency`,
      );
    }
  } finally {
    await client.close();
    await stop();
  }
  console.log(
    `peer protocol over loopback, ${values.store} store, ${BLOCK_BYTES / KiB} KiB blocks, ` +
      `${values["in-process"] ? "server in process" : "server in a child process"}, ` +
      `${seconds} s per phase`,
  );
  for (const line of results) console.log(line);
}

if (import.meta.main) await main();
