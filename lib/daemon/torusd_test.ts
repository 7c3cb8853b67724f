import assert from "node:assert/strict";
import { ManualClock } from "../clock.ts";
import { MetadataUnavailableError } from "../errors.ts";
import type { LogLevel } from "../log.ts";
import { MemoryMetadata, MemoryMetadataStore } from "../metadata/memory_metadata.ts";
import { initializeCluster } from "../node/cluster_node.ts";
import { MemoryTransport } from "../peer/memory_transport.ts";
import { createBlockVolume } from "../block/block_volume.ts";
import { RawClient } from "../nbd/_raw_client.ts";
import { NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_WRITE } from "../nbd/protocol.ts";
import { ETCD_RETRY_MIN_MS, Torusd } from "./torusd.ts";

Deno.test("Torusd: in cluster mode it waits for an unreachable etcd, logging each attempt", async () => {
  const clock = new ManualClock(1_700_000_000_000);
  const store = new MemoryMetadataStore();
  await initializeCluster(new MemoryMetadata({ clock, store }), {
    global: { blockSizeBytes: 65536, defaultBlockSpec: "crc,base" },
  });
  const logs: string[] = [];
  let attempts = 0;
  const dataDir = await Deno.makeTempDir({ prefix: "torusd-retry-" });
  try {
    const starting = Torusd.start({
      dataDir,
      size: { bytes: 16 * 65536 },
      autoInit: false,
      clock,
      logger: { log: (level: LogLevel, message: string) => logs.push(`${level} ${message}`) },
      cluster: {
        openMetadata: (uuid) => {
          attempts++;
          if (attempts <= 2) {
            return Promise.reject(
              new MetadataUnavailableError("etcd at 127.0.0.1:1 is unreachable"),
            );
          }
          return Promise.resolve(new MemoryMetadata({ clock, store, uuid }));
        },
        location: "etcd 127.0.0.1:1",
        initAdvice: "torusctl init --etcd 127.0.0.1:1",
        transport: () => new MemoryTransport({ clock }),
      },
    });
    while (attempts < 3) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      clock.advance(ETCD_RETRY_MIN_MS);
    }
    const daemon = await starting;
    await daemon.close();
    assert.equal(attempts, 3);
    assert.equal(
      logs.filter((line) => /^warn .*unreachable; retrying in \d+ s/.test(line)).length,
      2,
    );
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("Torusd: --auto-init takes the block size given; an initialized directory keeps its own", async () => {
  const clock = new ManualClock(1_700_000_000_000);
  const dataDir = await Deno.makeTempDir({ prefix: "torusd-block-size-" });
  const logger = { log: () => {} };
  try {
    const options = { dataDir, size: { bytes: 64 * 65536 }, autoInit: true, clock, logger };
    const first = await Torusd.start({ ...options, blockSizeBytes: 65536 });
    assert.equal(first.volumes.store.blockSizeBytes, 65536);
    assert.equal((await first.node.globalMetadata()).blockSizeBytes, 65536);
    await first.close();
    await assert.rejects(
      Torusd.start({ ...options, blockSizeBytes: 524288 }),
      /initialized with blocks of 65536 bytes/,
    );
    const again = await Torusd.start(options); // no --block-size: whatever it has
    assert.equal(again.volumes.store.blockSizeBytes, 65536);
    await again.close();
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

/** Opens `v` on the daemon's NBD port, runs `work`, closes, and waits for the server to release it. */
async function nbdSession(
  daemon: Torusd,
  work: (client: RawClient) => Promise<unknown>,
): Promise<void> {
  const client = await RawClient.connect(daemon.nbd!.port);
  try {
    await client.attach("v");
    await work(client);
  } finally {
    client.close();
  }
  // The server releases the volume (sync, collect, unlock) before it forgets the connection.
  for (let waited = 0; daemon.nbd!.stats().connections > 0; waited += 5) {
    assert.ok(waited < 10_000, "the connection did not close");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** One NBD request that must succeed; returns the reply's data. */
async function nbdOk(
  client: RawClient,
  type: number,
  offsetBytes: number,
  lengthBytes: number,
  data?: Uint8Array,
): Promise<Uint8Array> {
  await client.request({ type, flags: 0, offsetBytes, lengthBytes }, data);
  const reply = await client.readReply();
  assert.equal(reply.errno, 0);
  return reply.data;
}

/**
 * A daemon on a new data directory of `blocks` blocks of {@linkcode BLOCK}
 * bytes, serving NBD, with volume `v` of 8 blocks; `done()` stops it and
 * removes the directory.
 */
async function startWithVolume(
  prefix: string,
  blocks: number,
): Promise<{ daemon: Torusd; done: () => Promise<void> }> {
  const dataDir = await Deno.makeTempDir({ prefix });
  const daemon = await Torusd.start({
    dataDir,
    size: { bytes: blocks * BLOCK },
    autoInit: true,
    blockSizeBytes: BLOCK,
    clock: new ManualClock(1_700_000_000_000), // the periodic GC never fires
    logger: { log: () => {} },
    nbdAddress: "127.0.0.1:0",
  });
  const done = async () => {
    await daemon.close();
    await Deno.remove(dataDir, { recursive: true });
  };
  try {
    await createBlockVolume(daemon.volumes.metadata, "v", 8 * BLOCK);
  } catch (error) {
    await done();
    throw error;
  }
  return { daemon, done };
}

const BLOCK = 65536;

Deno.test("Torusd: when the last NBD client of a written volume leaves, what it replaced is collected", async () => {
  const { daemon, done } = await startWithVolume("torusd-close-gc-", 64);
  const block = BLOCK;
  try {
    const write = (client: RawClient, offsetBytes: number, data: Uint8Array) =>
      nbdOk(client, NBD_CMD_WRITE, offsetBytes, data.length, data);
    await nbdSession(daemon, (client) => write(client, 0, new Uint8Array(8 * block).fill(1)));
    let baseline = 0;
    await nbdSession(daemon, async (client) => {
      baseline = daemon.volumes.store.usedBlocks();
      // Copies on write: the old version of block 3 stays until a collection.
      await write(client, 3 * block + 4096, new Uint8Array(4096).fill(2));
      assert.ok(daemon.volumes.store.usedBlocks() > baseline);
    });
    await nbdSession(daemon, async (client) => {
      assert.equal(daemon.volumes.store.usedBlocks(), baseline, "collected at the close");
      const data = await nbdOk(client, NBD_CMD_READ, 0, 8 * block);
      const expected = new Uint8Array(8 * block).fill(1);
      expected.fill(2, 3 * block + 4096, 3 * block + 8192);
      assert.deepEqual(data, expected);
    });
    const { byTrigger, deletedBlocks } = daemon.gcStats;
    assert.equal(byTrigger.close.runs, 2, "one collection per closing writer");
    assert.equal(byTrigger.full.runs, 0);
    assert.ok(deletedBlocks >= 1, "the replaced block was counted");
  } finally {
    await done();
  }
});

Deno.test("Torusd: a write that finds the store full waits for a collection, counted as full", async () => {
  // 8 blocks written whole and flushed, three times, in a store of 26: the
  // third pass finds the store full (two versions and their INodes) until a
  // collection frees the first version. With 32 blocks no pass waits.
  const { daemon, done } = await startWithVolume("torusd-full-gc-", 26);
  try {
    await nbdSession(daemon, async (client) => {
      for (let pass = 1; pass <= 3; pass++) {
        await nbdOk(client, NBD_CMD_WRITE, 0, 8 * BLOCK, new Uint8Array(8 * BLOCK).fill(pass));
        await nbdOk(client, NBD_CMD_FLUSH, 0, 0);
      }
      assert.deepEqual(
        await nbdOk(client, NBD_CMD_READ, 0, 8 * BLOCK),
        new Uint8Array(8 * BLOCK).fill(3),
      );
    });
    const { byTrigger, deletedBlocks, failed } = daemon.gcStats;
    assert.ok(byTrigger.full.runs >= 1, `full: ${byTrigger.full.runs} runs`);
    assert.equal(byTrigger.close.runs, 1);
    assert.ok(deletedBlocks >= 8, `deleted ${deletedBlocks} blocks`);
    assert.equal(failed, 0);
  } finally {
    await done();
  }
});
