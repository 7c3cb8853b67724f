import assert from "node:assert/strict";
import { createBlockVolume, openBlockFile } from "../block/block_volume.ts";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { blockDigest, sectorCrcs } from "../core/sector.ts";
import {
  BlockCorruptError,
  BlockNotFoundError,
  ClosedError,
  NoPeersError,
  PeerUnavailableError,
} from "../errors.ts";
import { INodeStore } from "../inode/inode_store.ts";
import { MemoryMetadata, MemoryMetadataStore } from "../metadata/memory_metadata.ts";
import { Prng, seedFromEnv } from "../prng.ts";
import { testBlockStore } from "../storage/_block_store_conformance.ts";
import type { BlockRange, BlockRead, BlockStore } from "../storage/block_store.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { type Distributor, READ_LEVELS } from "./distributor.ts";
import { drive, TestCluster, tick } from "./_test_cluster.ts";
import { TestRing } from "./_test_ring.ts";

const BLOCK = 8192; // two sectors
const ref = (index: number, inode = 1) => new BlockRef(7, BlockType.data, inode, index);

function randomBlock(prng: Prng): Uint8Array {
  return prng.fill(new Uint8Array(BLOCK));
}

function digestOf(block: Uint8Array): number {
  return blockDigest(sectorCrcs(block, BLOCK));
}

/** The stored copy of `ref` on a node's store, or undefined. */
async function storedOn(store: BlockStore, r: BlockRef): Promise<Uint8Array | undefined> {
  return await store.hasBlock(r) ? (await store.readBlock(r)).data : undefined;
}

// ------------------------------------------------------------ BlockStore conformance

const clusters = new WeakMap<BlockStore, TestCluster>();

testBlockStore(
  "Distributor (a one-node ring)",
  async ({ blockSizeBytes, numBlocks }) => {
    const cluster = await TestCluster.create({
      nodes: 1,
      replication: 1,
      blockSizeBytes,
      numBlocks,
    });
    clusters.set(cluster.node("n0").distributor, cluster);
    return cluster.node("n0").distributor;
  },
  {
    corrupt: async (store, r, offsetBytes) => {
      clusters.get(store)!.node("n0").store.corruptForTest(r, offsetBytes);
    },
  },
);

testBlockStore(
  "Distributor (3 nodes, replication 3)",
  async ({ blockSizeBytes, numBlocks }) => {
    const cluster = await TestCluster.create({
      nodes: 3,
      replication: 3,
      blockSizeBytes,
      numBlocks,
    });
    clusters.set(cluster.node("n0").distributor, cluster);
    return cluster.node("n0").distributor;
  },
  {
    // Every copy: a single corrupt copy is (rightly) read around.
    corrupt: async (store, r, offsetBytes) => {
      for (const node of clusters.get(store)!.nodes.values()) {
        node.store.corruptForTest(r, offsetBytes);
      }
    },
  },
);

// ------------------------------------------------------------ writes and reads under failures

for (const readLevel of READ_LEVELS) {
  Deno.test(`Distributor (${readLevel}): replication 2 with a node partitioned: writes hand off, reads are right`, async () => {
    const cluster = await TestCluster.create({
      nodes: 3,
      replication: 2,
      blockSizeBytes: BLOCK,
      distributor: { readLevel },
    });
    const prng = new Prng(11);
    cluster.partition("n1");
    const writers = [
      cluster.client(),
      cluster.node("n0").distributor,
      cluster.node("n2").distributor,
    ];
    const written = new Map<string, Uint8Array>();
    for (let i = 0; i < 24; i++) {
      const data = randomBlock(prng);
      await writers[i % 3]!.writeBlock(ref(i), data);
      written.set(ref(i).key(), data);
    }
    for (let i = 0; i < 24; i++) {
      assert.deepEqual(await cluster.holders(ref(i)), ["n0", "n2"], `two copies of block ${i}`);
    }
    assert.ok(writers.some((w) => w.stats().handoffWrites > 0), "some owner was replaced");
    const readers = [cluster.client(), ...writers];
    for (const reader of readers) {
      for (let i = 0; i < 24; i++) {
        const data = written.get(ref(i).key())!;
        const read = await reader.readBlock(ref(i), undefined, digestOf(data));
        assert.deepEqual(read.data, data);
        const part = await reader.readBlock(ref(i), { offsetBytes: 4000, lengthBytes: 300 });
        assert.deepEqual(part.data, data.subarray(4000, 4300));
      }
    }
  });
}

/** How a simulated node fails. */
type Failure = "partition" | "hang" | "kill";
const FAILURES: Failure[] = ["partition", "hang", "kill"];

function fail(cluster: TestCluster, uuid: string, how: Failure): void {
  if (how === "partition") cluster.partition(uuid);
  else if (how === "kill") cluster.kill(uuid);
  else cluster.transport.setLatency(cluster.node(uuid).address, Infinity);
}

function recover(cluster: TestCluster, uuid: string): void {
  cluster.revive(uuid);
  cluster.transport.setLatency(cluster.node(uuid).address, undefined);
}

Deno.test("Distributor: acknowledged writes survive any single node failure (seeded simulation)", async () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const cluster = await TestCluster.create({ nodes: 5, replication: 2, blockSizeBytes: BLOCK });
  const uuids = [...cluster.nodes.keys()];
  const client = cluster.client();
  const model = new Map<string, { ref: BlockRef; data: Uint8Array }>();
  let down: string | undefined;
  let rangeWrites = 0;
  for (let step = 0; step < 200; step++) {
    const roll = prng.nextFloat();
    if (roll < 0.15) {
      // One node at most fails at a time, in one of three ways.
      if (down !== undefined) recover(cluster, down);
      down = prng.nextInt(3) === 0 ? undefined : uuids[prng.nextInt(uuids.length)];
      if (down !== undefined) fail(cluster, down, FAILURES[prng.nextInt(FAILURES.length)]!);
      continue;
    }
    const writers = [
      client,
      ...uuids.filter((u) => u !== down).map((u) => cluster.node(u).distributor),
    ];
    const writer = writers[prng.nextInt(writers.length)]!;
    const existing = [...model.values()];
    const context = `seed ${seed} step ${step}`;
    if (existing.length === 0 || roll < 0.55) {
      const r = roll < 0.45 || existing.length === 0
        ? ref(model.size, 1 + prng.nextInt(3))
        : existing[prng.nextInt(existing.length)]!.ref;
      const data = randomBlock(prng);
      await drive(cluster.clock, writer.writeBlock(r, data)).catch((error) => {
        throw new Error(`${context}: ${error}`);
      });
      model.set(r.key(), { ref: r, data });
    } else {
      const entry = existing[prng.nextInt(existing.length)]!;
      const offsetBytes = prng.nextInt(BLOCK);
      const patch = prng.fill(new Uint8Array(1 + prng.nextInt(BLOCK - offsetBytes)));
      const expected = entry.data.slice();
      expected.set(patch, offsetBytes);
      const crcs = await drive(
        cluster.clock,
        writer.writeBlockRange(entry.ref, offsetBytes, patch, digestOf(entry.data)),
      ).catch((error) => {
        throw new Error(`${context}: ${error}`);
      });
      assert.equal(blockDigest(crcs), digestOf(expected), context);
      entry.data = expected;
      rangeWrites++;
    }
  }
  if (down !== undefined) recover(cluster, down);
  assert.ok(rangeWrites > 20);
  // Every acknowledged block has two current copies…
  for (const { ref: r, data } of model.values()) {
    let current = 0;
    for (const node of cluster.nodes.values()) {
      const copy = await storedOn(node.store, r);
      if (copy !== undefined && digestOf(copy) === digestOf(data)) current++;
    }
    assert.ok(current >= 2, `seed ${seed}: ${r} has ${current} current copies`);
  }
  // …so it reads back right whichever node fails, however it fails, at every read level.
  for (const failed of uuids) {
    const how = FAILURES[prng.nextInt(FAILURES.length)]!;
    fail(cluster, failed, how);
    const readLevel = READ_LEVELS[prng.nextInt(READ_LEVELS.length)]!;
    const reader = cluster.client({ readLevel });
    for (const { ref: r, data } of model.values()) {
      const read = await drive(cluster.clock, reader.readBlock(r, undefined, digestOf(data)));
      assert.deepEqual(read.data, data, `seed ${seed}: ${r} with ${failed} ${how}, ${readLevel}`);
    }
    recover(cluster, failed);
  }
});

Deno.test("Distributor: every owner down gives an error naming the block and peers, never wrong bytes", async () => {
  for (const readLevel of READ_LEVELS) {
    const cluster = await TestCluster.create({
      nodes: 3,
      replication: 2,
      blockSizeBytes: BLOCK,
      distributor: { readLevel },
    });
    const prng = new Prng(5);
    const r = ref(1);
    const data = randomBlock(prng);
    await cluster.client().writeBlock(r, data);
    const owners = cluster.owners(r);
    const other = [...cluster.nodes.keys()].find((u) => !owners.includes(u))!;
    // The third node holds an old version of the block (it was an owner once).
    await cluster.node(other).store.writeBlock(r, randomBlock(prng));
    for (const owner of owners) cluster.partition(owner);
    const reader = cluster.client();
    const error = await drive(
      cluster.clock,
      reader.readBlock(r, undefined, digestOf(data)).then(() => undefined, (e) => e),
    );
    assert.ok(error instanceof PeerUnavailableError, `${readLevel}: ${error}`);
    assert.match(error.message, new RegExp(r.toString()));
    for (const owner of owners) assert.match(error.message, new RegExp(owner));
    assert.match(error.message, /does not match the expected digest/);
    // Known to be down everywhere: no peer at all.
    for (const uuid of [...cluster.nodes.keys()]) cluster.kill(uuid);
    const none = await drive(cluster.clock, reader.readBlock(r).then(() => undefined, (e) => e));
    assert.ok(none instanceof NoPeersError, `${readLevel}: ${none}`);
  }
});

Deno.test("Distributor: a stale replica left by a missed range write is never returned when the digest is given", async () => {
  const cluster = await TestCluster.create({ nodes: 3, replication: 2, blockSizeBytes: BLOCK });
  const prng = new Prng(7);
  const r = ref(3);
  const v1 = randomBlock(prng);
  const writer = cluster.client();
  await writer.writeBlock(r, v1);
  const [first, second] = cluster.owners(r) as [string, string];
  const third = [...cluster.nodes.keys()].find((u) => u !== first && u !== second)!;
  cluster.partition(first);
  const patch = prng.fill(new Uint8Array(100));
  const crcs = await writer.writeBlockRange(r, 4090, patch, digestOf(v1));
  const v2 = v1.slice();
  v2.set(patch, 4090);
  assert.equal(blockDigest(crcs), digestOf(v2));
  cluster.heal(first);
  assert.deepEqual(await storedOn(cluster.node(first).store, r), v1, "the missed owner is stale");
  assert.deepEqual(await storedOn(cluster.node(second).store, r), v2);
  assert.deepEqual(
    await storedOn(cluster.node(third).store, r),
    v2,
    "copied whole to the next peer",
  );
  for (const readLevel of READ_LEVELS) {
    const readers = [
      cluster.client({ readLevel }),
      cluster.distributor(first, cluster.node(first).store, { readLevel }), // stale local copy
    ];
    for (const reader of readers) {
      assert.deepEqual((await reader.readBlock(r, undefined, digestOf(v2))).data, v2, readLevel);
      const part = await reader.readBlock(r, { offsetBytes: 4000, lengthBytes: 200 }, digestOf(v2));
      assert.deepEqual(part.data, v2.subarray(4000, 4200));
    }
  }
  // The next range write reaches the copies that were updated, and keeps them in step.
  const patch2 = new Uint8Array([1, 2, 3]);
  await writer.writeBlockRange(r, 0, patch2, digestOf(v2));
  v2.set(patch2, 0);
  assert.deepEqual(await storedOn(cluster.node(second).store, r), v2);
  assert.deepEqual(await storedOn(cluster.node(third).store, r), v2);
  // A writer without the placement (another process) finds the copies through the permutation.
  const other = cluster.client();
  const patch3 = new Uint8Array([9]);
  await other.writeBlockRange(r, 8000, patch3, digestOf(v2));
  v2.set(patch3, 8000);
  const holdersOfCurrent: string[] = [];
  for (const node of cluster.nodes.values()) {
    const copy = await storedOn(node.store, r);
    if (copy !== undefined && digestOf(copy) === digestOf(v2)) holdersOfCurrent.push(node.uuid);
  }
  assert.ok(holdersOfCurrent.length >= 2, `current copies on ${holdersOfCurrent}`);
});

Deno.test("Distributor: writeBlockRange errors: no copy, only stale copies, replicas that disagree", async () => {
  const cluster = await TestCluster.create({ nodes: 3, replication: 2, blockSizeBytes: BLOCK });
  const prng = new Prng(8);
  const client = cluster.client();
  await assert.rejects(client.writeBlockRange(ref(1), 0, new Uint8Array(1)), BlockNotFoundError);
  const data = randomBlock(prng);
  await client.writeBlock(ref(2), data);
  await assert.rejects(
    client.writeBlockRange(ref(2), 0, new Uint8Array(1), digestOf(data) ^ 1),
    BlockCorruptError,
  );
  assert.deepEqual((await client.readBlock(ref(2))).data, data, "a refused write changes nothing");
  // One owner's copy differs behind the distributor's back; without a digest both accept.
  const [, second] = cluster.owners(ref(2)) as [string, string];
  await cluster.node(second).store.writeBlock(ref(2), randomBlock(prng));
  await assert.rejects(client.writeBlockRange(ref(2), 0, new Uint8Array(1)), BlockCorruptError);
  await assert.rejects(client.writeBlockRange(ref(2), BLOCK, new Uint8Array(1)), RangeError);
});

Deno.test("Distributor: the read cache never returns stale bytes", async () => {
  const cluster = await TestCluster.create({ nodes: 3, replication: 2, blockSizeBytes: BLOCK });
  const prng = new Prng(9);
  const client = cluster.client({ readCacheBytes: 1 << 20 });
  const r = ref(1);
  const v1 = randomBlock(prng);
  await client.writeBlock(r, v1);
  const first = await client.readBlock(r);
  first.data.fill(0); // the caller owns its buffer
  assert.deepEqual((await client.readBlock(r)).data, v1);
  assert.deepEqual(
    (await client.readBlock(r, { offsetBytes: 10, lengthBytes: 5 })).data,
    v1.subarray(10, 15),
  );
  assert.equal(client.stats().cacheHits, 2);
  const v2 = randomBlock(prng);
  await client.writeBlock(r, v2);
  assert.deepEqual((await client.readBlock(r)).data, v2, "after writeBlock");
  await client.writeBlockRange(r, 100, new Uint8Array([1, 2]), digestOf(v2));
  v2.set([1, 2], 100);
  assert.deepEqual((await client.readBlock(r)).data, v2, "after writeBlockRange");
  assert.equal(await client.deleteBlock(r), true);
  await assert.rejects(client.readBlock(r), BlockNotFoundError, "after deleteBlock");
  // A cached block that does not match the digest asked for is not served.
  const v3 = randomBlock(prng);
  await client.writeBlock(r, v3);
  await client.readBlock(r);
  await assert.rejects(client.readBlock(r, undefined, digestOf(v3) ^ 1), BlockCorruptError);
});

Deno.test("Distributor: a read that raced a write does not fill the cache with the old bytes", async () => {
  let gate: Promise<void> | null = null;
  class GatedStore extends MemoryBlockStore {
    override async readBlock(r: BlockRef, range?: BlockRange): Promise<BlockRead> {
      const read = await super.readBlock(r, range);
      if (gate !== null) await gate;
      return read;
    }
  }
  const cluster = await TestCluster.create({
    nodes: 3,
    replication: 2,
    blockSizeBytes: BLOCK,
    store: (_, options) => new GatedStore(options),
  });
  const prng = new Prng(10);
  const client = cluster.client({ readCacheBytes: 1 << 20 });
  const r = ref(1);
  const v1 = randomBlock(prng);
  const v2 = randomBlock(prng);
  await client.writeBlock(r, v1);
  let open!: () => void;
  gate = new Promise((resolve) => open = resolve);
  const reading = client.readBlock(r); // reads v1, then waits at the gate
  await tick();
  await client.writeBlock(r, v2);
  gate = null;
  open();
  assert.deepEqual((await reading).data, v1, "the racing read saw the old bytes");
  assert.deepEqual((await client.readBlock(r)).data, v2, "but did not cache them");
});

/** A memory store that counts its flushes in `flushes`. */
function countingStore(flushes: Map<string, number>) {
  return (uuid: string, options: { blockSizeBytes: number; numBlocks: number }) =>
    new (class extends MemoryBlockStore {
      override async flush(): Promise<void> {
        flushes.set(uuid, (flushes.get(uuid) ?? 0) + 1);
        await super.flush();
      }
    })(options);
}

Deno.test("Distributor: flush() fails while a peer written to is unreachable and no other peer can take its blocks, and reaches it later", async () => {
  const flushes = new Map<string, number>();
  const cluster = await TestCluster.create({
    nodes: 2,
    replication: 2,
    blockSizeBytes: BLOCK,
    store: countingStore(flushes),
  });
  const client = cluster.client();
  const r = ref(1);
  await client.writeBlock(r, new Uint8Array([1]));
  await client.flush();
  assert.deepEqual([...flushes.keys()].sort(), ["n0", "n1"], "only the peers written to");
  await client.writeBlock(r, new Uint8Array([4]));
  cluster.partition("n1");
  const error = await client.flush().then(() => undefined, (e) => e);
  assert.ok(error instanceof PeerUnavailableError, String(error));
  assert.match(error.message, /n1: unavailable/);
  await assert.rejects(client.flush(), PeerUnavailableError, "still not durable on n1");
  cluster.heal("n1");
  const before = flushes.get("n1")!;
  await client.flush();
  assert.equal(flushes.get("n1"), before + 1);
  await client.flush();
  assert.equal(flushes.get("n1"), before + 1, "nothing new to flush on n1");
  // A peer removed from the ring is no longer waited for.
  await client.writeBlock(r, new Uint8Array([5]));
  cluster.partition("n1");
  cluster.setRing(cluster.ring.withMembers(["n0"]));
  await client.flush();
});

Deno.test("Distributor: a peer that cannot flush has the blocks it acknowledged since its last flush copied to other peers", async () => {
  const flushes = new Map<string, number>();
  const cluster = await TestCluster.create({
    nodes: 4,
    replication: 2,
    blockSizeBytes: BLOCK,
    store: countingStore(flushes),
  });
  const client = cluster.client();
  const prng = new Prng(seedFromEnv());
  const blocks = new Map<number, Uint8Array>();
  for (let i = 0; i < 40; i++) {
    blocks.set(i, randomBlock(prng));
    await client.writeBlock(ref(i), blocks.get(i)!);
  }
  await client.flush();
  // Blocks written (whole or in part) after that flush are not durable on the peer that dies.
  const dying = cluster.owners(ref(0))[0]!;
  const dirty: number[] = [];
  for (let i = 0; i < 40; i += 2) {
    const block = blocks.get(i)!;
    if (i % 4 === 0) {
      block.set(randomBlock(prng));
      await client.writeBlock(ref(i), block);
    } else {
      const digest = digestOf(block);
      block.set([i, i + 1, i + 2], 100);
      await client.writeBlockRange(ref(i), 100, block.subarray(100, 103), digest);
    }
    if (cluster.owners(ref(i)).includes(dying)) dirty.push(i);
  }
  assert.ok(dirty.length > 0);
  cluster.kill(dying);
  const before = new Map(flushes);
  await client.flush();
  assert.ok(
    cluster.logger.lines.some((line) => line.includes(`peer ${dying} did not confirm a flush`)),
    cluster.logger.lines.join("\n"),
  );
  // Every block written since the last flush has two copies on live peers, each flushed since.
  for (const i of dirty) {
    const holders = (await cluster.holders(ref(i))).filter((uuid) => uuid !== dying);
    assert.equal(holders.length, 2, `block ${i} on ${holders}`);
    for (const uuid of holders) {
      assert.ok((flushes.get(uuid) ?? 0) > (before.get(uuid) ?? 0), `${uuid} flushed`);
    }
  }
  // The dead peer is no longer waited for, and every block reads back.
  await client.flush();
  for (const [i, block] of blocks) {
    assert.deepEqual((await client.readBlock(ref(i))).data, block, `block ${i}`);
  }
  // It comes back with stale copies of the blocks rewritten: reads that check the digest skip them.
  cluster.revive(dying);
  for (const [i, block] of blocks) {
    assert.deepEqual((await client.readBlock(ref(i), undefined, digestOf(block))).data, block);
  }
});

Deno.test("Distributor: a failed flush whose blocks have no known holder keeps failing", async () => {
  const cluster = await TestCluster.create({ nodes: 3, replication: 2, blockSizeBytes: BLOCK });
  const client = cluster.client();
  const r = ref(1);
  const [a, b] = cluster.owners(r) as [string, string];
  await client.writeBlock(r, new Uint8Array([1]));
  // A write that fails forgets the placement: no copy is known to be the latest.
  cluster.partition(a);
  cluster.partition(b);
  cluster.partition([...cluster.nodes.keys()].find((u) => u !== a && u !== b)!);
  await assert.rejects(client.writeBlock(r, new Uint8Array([2])), NoPeersError);
  for (const uuid of cluster.nodes.keys()) cluster.heal(uuid);
  cluster.partition(b);
  await assert.rejects(client.flush(), PeerUnavailableError);
  cluster.heal(b);
  await client.flush();
});

Deno.test("Distributor: too few reachable peers fails the write (no lying success); a small ring warns once", async () => {
  const cluster = await TestCluster.create({ nodes: 2, replication: 2, blockSizeBytes: BLOCK });
  const client = cluster.client();
  cluster.partition("n1");
  const error = await client.writeBlock(ref(1), new Uint8Array([1])).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(error instanceof NoPeersError, String(error));
  assert.match(error.message, new RegExp(`${ref(1)}: only 1 of 2 copies`));
  assert.equal(client.stats().failedWrites, 1);
  // The operator removes the dead node: the ring is now smaller than its replication.
  cluster.setRing(cluster.ring.withMembers(["n0"]));
  await client.writeBlock(ref(1), new Uint8Array([1]));
  await client.writeBlock(ref(2), new Uint8Array([2]));
  assert.deepEqual(await cluster.holders(ref(1)), ["n0"]);
  const warnings = cluster.logger.lines.filter((line) => line.includes("for replication 2"));
  assert.equal(warnings.length, 1, cluster.logger.lines.join("\n"));
  assert.equal(client.stats().degradedWrites, 2);
});

Deno.test("Distributor: write level one makes one copy, local keeps it in the local store", async () => {
  const cluster = await TestCluster.create({ nodes: 3, replication: 2, blockSizeBytes: BLOCK });
  const node = cluster.distributor("n0", cluster.node("n0").store, { writeLevel: "one" });
  for (let i = 0; i < 10; i++) {
    await node.writeBlock(ref(i), new Uint8Array([i]));
    const holders = await cluster.holders(ref(i));
    const owners = cluster.owners(ref(i));
    assert.deepEqual(
      holders,
      owners.includes("n0") ? ["n0"] : [cluster.ring.getPeers(ref(i)).peers[0]],
    );
  }
  const local = cluster.client({ writeLevel: "local" });
  await local.writeBlock(ref(20), new Uint8Array([20]));
  assert.deepEqual(await cluster.holders(ref(20)), []);
  assert.equal(await local.hasBlock(ref(20)), true);
  assert.equal((await local.readBlock(ref(20))).data[0], 20);
  await local.writeBlockRange(ref(20), 1, new Uint8Array([21]));
  assert.deepEqual(
    (await local.readBlock(ref(20), { offsetBytes: 0, lengthBytes: 2 })).data,
    new Uint8Array([20, 21]),
  );
  await assert.rejects(cluster.client().readBlock(ref(20)), BlockNotFoundError);
  // A full local store falls back to one copy on the ring.
  const tiny = cluster.distributor(
    "client-tiny",
    new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 1 }),
    {
      writeLevel: "local",
    },
  );
  await tiny.writeBlock(ref(30), new Uint8Array([30]));
  await tiny.writeBlock(ref(31), new Uint8Array([31]));
  assert.equal((await cluster.holders(ref(31))).length, 1);
  assert.equal((await tiny.readBlock(ref(31))).data[0], 31);
});

Deno.test("Distributor: spread reads work when this node is the only owner, and around a hung owner", async () => {
  const single = await TestCluster.create({
    nodes: 1,
    replication: 1,
    blockSizeBytes: BLOCK,
    distributor: { readLevel: "spread" },
  });
  const only = single.node("n0").distributor;
  await only.writeBlock(ref(1), new Uint8Array([1]));
  assert.equal((await only.readBlock(ref(1))).data[0], 1);
  await assert.rejects(only.readBlock(ref(2)), BlockNotFoundError);

  const cluster = await TestCluster.create({ nodes: 3, replication: 2, blockSizeBytes: BLOCK });
  const r = ref(5);
  await cluster.client().writeBlock(r, new Uint8Array([5]));
  const [hung] = cluster.owners(r) as [string];
  cluster.transport.setLatency(cluster.node(hung).address, Infinity);
  const spread = cluster.client({ readLevel: "spread" });
  assert.equal((await spread.readBlock(r)).data[0], 5, "no clock needed: the other owner answers");
  // Level block waits out the hung owner's timeout if it comes first.
  const block = cluster.client({ readLevel: "block" });
  const read = await drive(cluster.clock, block.readBlock(r));
  assert.equal(read.data[0], 5);
});

Deno.test("Distributor: level block retries unreachable peers with backoff, and gives up in bounded time", async () => {
  const cluster = await TestCluster.create({ nodes: 3, replication: 2, blockSizeBytes: BLOCK });
  const r = ref(1);
  await cluster.client().writeBlock(r, new Uint8Array([1]));
  for (const uuid of cluster.nodes.keys()) cluster.partition(uuid);
  const reader = cluster.client();
  let result: number | undefined;
  const reading = reader.readBlock(r).then((read) => result = read.data[0]);
  await tick();
  cluster.clock.advance(150); // rounds 1 and 2 have failed
  await tick();
  assert.equal(result, undefined);
  for (const uuid of cluster.nodes.keys()) cluster.heal(uuid);
  await drive(cluster.clock, reading);
  assert.equal(result, 1);

  for (const uuid of cluster.nodes.keys()) cluster.partition(uuid);
  const start = cluster.clock.nowMs();
  const error = await drive(cluster.clock, reader.readBlock(r).then(() => undefined, (e) => e), 10);
  assert.ok(error instanceof NoPeersError, String(error));
  assert.ok(cluster.clock.nowMs() - start <= 100 + 200 + 400 + 800 + 10, "four backoffs at most");
  // Missing everywhere is an answer: no retries.
  for (const uuid of cluster.nodes.keys()) cluster.heal(uuid);
  const at = cluster.clock.nowMs();
  await assert.rejects(reader.readBlock(ref(99)), BlockNotFoundError);
  assert.equal(cluster.clock.nowMs(), at);
});

Deno.test("Distributor: deleteBlock() removes every copy it can reach and says whether any existed", async () => {
  const cluster = await TestCluster.create({ nodes: 4, replication: 2, blockSizeBytes: BLOCK });
  const client = cluster.client();
  const r = ref(1);
  await client.writeBlock(r, new Uint8Array([1]));
  const owners = cluster.owners(r);
  const spare = [...cluster.nodes.keys()].find((u) => !owners.includes(u))!;
  await cluster.node(spare).store.writeBlock(r, new Uint8Array([1])); // a handoff copy
  assert.equal(await client.deleteBlock(r), true);
  assert.deepEqual(await cluster.holders(r), []);
  assert.equal(await client.deleteBlock(r), false);
  await client.writeBlock(r, new Uint8Array([1]));
  cluster.partition(owners[0]!);
  assert.equal(await client.deleteBlock(r), true, "best effort");
  assert.deepEqual(await cluster.holders(r), [owners[0]], "the unreachable copy stays");
});

Deno.test("Distributor: rings never go backwards; local queries describe the local store; close()", async () => {
  const cluster = await TestCluster.create({ nodes: 3, replication: 2, blockSizeBytes: BLOCK });
  const node = cluster.node("n0").distributor;
  const v1 = node.ring;
  assert.equal(node.setRing(new TestRing(1, 2, ["n0"])), false);
  assert.equal(node.setRing(new TestRing(0, 2, ["n0"])), false);
  assert.equal(node.ring, v1);
  assert.ok(cluster.logger.lines.some((line) => line.includes("ignoring ring version 0")));
  const v2 = new TestRing(2, 1, ["n0", "n1", "n2"]);
  assert.equal(node.setRing(v2), true);
  assert.equal(node.ring, v2);

  for (let i = 0; i < 12; i++) await node.writeBlock(ref(i), new Uint8Array([i]));
  const local = cluster.node("n0").store;
  assert.equal(node.usedBlocks(), local.usedBlocks());
  assert.equal(node.numBlocks(), local.numBlocks());
  assert.deepEqual(
    node.blockRefs().map((r) => r.key()).sort(),
    local.blockRefs().map((r) => r.key()).sort(),
  );
  assert.ok(node.usedBlocks() > 0 && node.usedBlocks() < 12, "replication 1 spreads the blocks");
  const mine = node.blockRefs()[0]!;
  assert.equal(await node.hasBlock(mine), true);
  await node.close();
  await assert.rejects(node.readBlock(mine), ClosedError);
  await assert.rejects(node.flush(), ClosedError);
  await node.close(); // twice is fine
});

Deno.test("Distributor: a writer's placement is forgotten after a failed write, and stale holders are cleaned", async () => {
  const cluster = await TestCluster.create({ nodes: 4, replication: 2, blockSizeBytes: BLOCK });
  const client = cluster.client();
  const r = ref(1);
  const [a, b] = cluster.owners(r) as [string, string];
  cluster.partition(a);
  await client.writeBlock(r, new Uint8Array([1])); // b and a handoff peer
  const handoff = (await cluster.holders(r)).find((u) => u !== b)!;
  cluster.heal(a);
  await client.writeBlock(r, new Uint8Array([2])); // back on the owners
  assert.deepEqual(await cluster.holders(r), [a, b].sort(), "the handoff copy was deleted");
  assert.notEqual(handoff, a);
});

// ------------------------------------------------------------ the file stack on a distributor

Deno.test("Distributor: a volume written through the file stack reads back identical with any node down", async () => {
  const cluster = await TestCluster.create({ nodes: 3, replication: 2, blockSizeBytes: BLOCK });
  const metadata = new MemoryMetadata({ clock: cluster.clock, store: new MemoryMetadataStore() });
  await metadata.initialize(
    { blockSizeBytes: BLOCK, defaultBlockSpec: "crc,base" },
    { version: 1, bytes: new Uint8Array() },
  );
  const lease = await metadata.grantLease(30_000);
  const context = (store: Distributor) => ({ metadata, store, inodes: new INodeStore(store) });
  const size = 40 * BLOCK;
  await createBlockVolume(metadata, "v", size);
  const prng = new Prng(21);
  const reference = prng.fill(new Uint8Array(size));

  const writer = cluster.client();
  let file = await openBlockFile(context(writer), "v", { lease });
  await file.writeAt(reference, 0);
  await file.sync();
  // A node is unreachable during the next session: blocks hand off, range writes follow them.
  cluster.partition("n1");
  for (let i = 0; i < 60; i++) {
    const offset = prng.nextInt(size - 600);
    const patch = prng.fill(new Uint8Array(1 + prng.nextInt(600)));
    reference.set(patch, offset);
    await file.writeAt(patch, offset);
    if (i === 30) await file.sync();
  }
  await file.close();
  cluster.heal("n1");

  for (const down of cluster.nodes.keys()) {
    cluster.kill(down);
    const reader = await openBlockFile(context(cluster.client()), "v", { readOnly: true });
    assert.deepEqual(await reader.readAt(0, size), reference, `with ${down} down`);
    await reader.close();
    cluster.revive(down);
  }
  // And a writer that reopens the volume keeps working on it.
  file = await openBlockFile(context(cluster.client()), "v", { lease });
  await file.writeAt(new Uint8Array([1, 2, 3]), 5);
  reference.set([1, 2, 3], 5);
  await file.close();
  const reader = await openBlockFile(context(cluster.client()), "v", { readOnly: true });
  assert.deepEqual(await reader.readAt(0, size), reference);
});

Deno.test("Distributor: an empty ring gives NoPeersError; defaults are block and all", async () => {
  const cluster = await TestCluster.create({ nodes: 1, replication: 2, blockSizeBytes: BLOCK });
  const node = cluster.node("n0").distributor;
  assert.equal(node.readLevel, "block");
  assert.equal(node.writeLevel, "all");
  assert.equal(node.kind, "distributor");
  cluster.setRing(cluster.ring.withMembers([]));
  await assert.rejects(node.writeBlock(ref(1), new Uint8Array(1)), NoPeersError);
  await assert.rejects(node.readBlock(ref(1)), NoPeersError);
  await cluster.node("n0").store.writeBlock(ref(1), new Uint8Array([6]));
  assert.equal((await node.readBlock(ref(1))).data[0], 6, "a local copy is still served");
  assert.equal(await node.deleteBlock(ref(1)), true, "and deleted");
  await assert.rejects(node.readBlock(ref(1)), NoPeersError);
});

Deno.test("Distributor.repairLocalCopy(): a corrupt local copy is rewritten from a peer's good one", async () => {
  const cluster = await TestCluster.create({ nodes: 3, replication: 2, blockSizeBytes: BLOCK });
  const prng = new Prng(9);
  const r = ref(4);
  const data = randomBlock(prng);
  await cluster.client().writeBlock(r, data);
  const [first, second] = cluster.owners(r);
  const node = cluster.node(first!);
  node.store.corruptForTest(r, 10);
  await assert.rejects(node.store.readBlock(r), BlockCorruptError);
  assert.equal(await drive(cluster.clock, node.distributor.repairLocalCopy(r)), second);
  assert.deepEqual((await node.store.readBlock(r)).data, data);

  // The other copy corrupt too: nothing to copy from, and the local copy is left alone.
  node.store.corruptForTest(r, 10);
  cluster.node(second!).store.corruptForTest(r, 20);
  assert.equal(await drive(cluster.clock, node.distributor.repairLocalCopy(r)), null);
  await assert.rejects(node.store.readBlock(r), BlockCorruptError);
  // A peer that is down is passed over the same way.
  cluster.partition(second!);
  assert.equal(await drive(cluster.clock, node.distributor.repairLocalCopy(r)), null);
});
