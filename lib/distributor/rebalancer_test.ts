import assert from "node:assert/strict";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { Prng } from "../prng.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import type { Distributor } from "./distributor.ts";
import { Rebalancer } from "./rebalancer.ts";
import { TestCluster } from "./_test_cluster.ts";

const BLOCK = 4096;
const BLOCKS = 60;
const ref = (index: number) => new BlockRef(9, BlockType.data, 2, index);

/** A cluster with BLOCKS blocks written through a client; returns their contents. */
async function filled(nodes: number, replication: number) {
  const cluster = await TestCluster.create({ nodes, replication, blockSizeBytes: BLOCK });
  const prng = new Prng(nodes * 10 + replication);
  const client = cluster.client();
  const contents: Uint8Array[] = [];
  for (let i = 0; i < BLOCKS; i++) {
    contents.push(prng.fill(new Uint8Array(BLOCK)));
    await client.writeBlock(ref(i), contents[i]!);
  }
  return { cluster, contents };
}

function rebalancer(cluster: TestCluster, distributor: Distributor, blocksPerTick = 7) {
  return new Rebalancer({
    distributor,
    clock: cluster.clock,
    blocksPerTick,
    logger: cluster.logger,
  });
}

/** Every block is on exactly its owners, with the right bytes. */
async function assertPlacedOnOwners(cluster: TestCluster, contents: Uint8Array[]) {
  for (let i = 0; i < contents.length; i++) {
    assert.deepEqual(await cluster.holders(ref(i)), cluster.owners(ref(i)), `block ${i}`);
    for (const uuid of cluster.owners(ref(i))) {
      assert.deepEqual((await cluster.node(uuid).store.readBlock(ref(i))).data, contents[i]);
    }
  }
}

Deno.test("Rebalancer: after a node is removed, the survivors restore every block's copies", async () => {
  const { cluster, contents } = await filled(4, 2);
  cluster.kill("n3");
  const survivors = ["n0", "n1", "n2"];
  cluster.setRing(cluster.ring.withMembers(survivors));
  let sent = 0;
  for (const uuid of survivors) {
    sent += (await rebalancer(cluster, cluster.node(uuid).distributor).runCycle()).sentBlocks;
  }
  assert.ok(sent > 0);
  // n3 is gone for good: only the survivors count.
  cluster.nodes.delete("n3");
  await assertPlacedOnOwners(cluster, contents);
});

Deno.test("Rebalancer: after a node is added, blocks move to it and extra copies are removed", async () => {
  const { cluster, contents } = await filled(3, 2);
  await cluster.addNode("n3");
  cluster.setRing(cluster.ring.withMembers(["n0", "n1", "n2", "n3"]));
  const rebalancers = [...cluster.nodes.values()].map((node) =>
    rebalancer(cluster, node.distributor)
  );
  const first = [];
  for (const r of rebalancers) first.push(await r.runCycle());
  assert.ok(first.some((report) => report.deletedBlocks > 0), "old owners let go");
  assert.ok(rebalancers.some((r) => r.status().rebalancing));
  await assertPlacedOnOwners(cluster, contents);
  assert.ok(cluster.node("n3").store.usedBlocks() > 0);
  assert.equal(
    [...cluster.nodes.values()].reduce((sum, node) => sum + node.store.usedBlocks(), 0),
    2 * BLOCKS,
  );
  // A second cycle finds nothing to do: balanced.
  for (const r of rebalancers) {
    const report = await r.runCycle();
    assert.equal(report.sentBlocks + report.deletedBlocks + report.keptBlocks, 0);
    assert.equal(r.status().rebalancing, false);
    assert.ok(r.status().lastRebalanceFinishMs > 0);
  }
});

Deno.test("Rebalancer: a tick is bounded; the status reports blocks sent", async () => {
  const { cluster } = await filled(3, 2);
  await cluster.addNode("n3");
  cluster.setRing(cluster.ring.withMembers(["n0", "n1", "n2", "n3"]));
  const node = cluster.node("n0");
  const total = node.store.usedBlocks();
  const r = rebalancer(cluster, node.distributor, 5);
  let ticks = 0;
  let sent = 0;
  for (;;) {
    const report = await r.tick();
    ticks++;
    sent += report.sentBlocks;
    assert.ok(report.checkedBlocks <= 5);
    if (report.cycleDone) break;
    assert.equal(r.status().cycleSentBlocks, sent);
  }
  assert.equal(ticks, Math.ceil(total / 5));
  assert.equal(r.status().lastRebalanceBlocks, sent);
});

Deno.test("Rebalancer: fails closed: an unreachable owner keeps the local copy until it confirms", async () => {
  const { cluster, contents } = await filled(3, 2);
  await cluster.addNode("n3");
  cluster.setRing(cluster.ring.withMembers(["n0", "n1", "n2", "n3"]));
  const before = await Promise.all(contents.map((_, i) => cluster.holders(ref(i))));
  cluster.partition("n3");
  const rebalancers = ["n0", "n1", "n2"].map((u) =>
    rebalancer(cluster, cluster.node(u).distributor)
  );
  let kept = 0;
  for (const r of rebalancers) kept += (await r.runCycle()).keptBlocks;
  assert.ok(kept > 0);
  for (let i = 0; i < BLOCKS; i++) {
    const holders = await cluster.holders(ref(i));
    if (cluster.owners(ref(i)).includes("n3")) {
      for (const uuid of before[i]!) {
        assert.ok(
          holders.includes(uuid),
          `block ${i}: ${uuid} keeps its copy while n3 is unreachable`,
        );
      }
    } else {
      assert.deepEqual(holders, cluster.owners(ref(i)), `block ${i} moved`);
    }
  }
  assert.ok(rebalancers.some((r) => r.status().rebalancing));
  cluster.heal("n3");
  for (const r of rebalancers) await r.runCycle();
  await assertPlacedOnOwners(cluster, contents);
});

Deno.test("Rebalancer: never deletes a copy when an owner holds a different version, or when pushes fail", async () => {
  const cluster = await TestCluster.create({
    nodes: 3,
    replication: 1,
    blockSizeBytes: BLOCK,
    store: (uuid, options) =>
      new MemoryBlockStore({ ...options, numBlocks: uuid === "n2" ? 0 : options.numBlocks }),
  });
  // Find blocks owned by n1 and by n2 (which is full), held by n0 (not their owner).
  const prng = new Prng(3);
  const ownedBy = (uuid: string) =>
    Array.from({ length: 50 }, (_, i) => ref(i)).find((r) => cluster.owners(r)[0] === uuid)!;
  const differs = ownedBy("n1");
  const full = ownedBy("n2");
  const n0 = cluster.node("n0").store;
  await n0.writeBlock(differs, prng.fill(new Uint8Array(BLOCK)));
  await cluster.node("n1").store.writeBlock(differs, prng.fill(new Uint8Array(BLOCK)));
  await n0.writeBlock(full, new Uint8Array([1]));
  const report = await rebalancer(cluster, cluster.node("n0").distributor).runCycle();
  assert.equal(report.keptBlocks, 2);
  assert.equal(await n0.hasBlock(differs), true, "a different version on the owner is no proof");
  assert.equal(await n0.hasBlock(full), true, "the last copy stays when the owner cannot take it");
  assert.match(cluster.logger.lines.join("\n"), /holds a different version/);
});

Deno.test("Rebalancer: a client's write cache (write level local) drains into the owners", async () => {
  const cluster = await TestCluster.create({ nodes: 3, replication: 2, blockSizeBytes: BLOCK });
  const client = cluster.client({ writeLevel: "local" });
  const prng = new Prng(4);
  const contents = Array.from({ length: 10 }, () => prng.fill(new Uint8Array(BLOCK)));
  for (const [i, data] of contents.entries()) await client.writeBlock(ref(i), data);
  assert.equal(client.usedBlocks(), 10);
  const report = await rebalancer(cluster, client).runCycle();
  assert.equal(report.sentBlocks, 20);
  assert.equal(report.deletedBlocks, 10);
  assert.equal(client.usedBlocks(), 0);
  await assertPlacedOnOwners(cluster, contents);
  for (const [i, data] of contents.entries()) {
    assert.deepEqual((await client.readBlock(ref(i))).data, data);
  }
});

Deno.test("Rebalancer: blocks the garbage collector proved dead are deleted, not pushed", async () => {
  const cluster = await TestCluster.create({ nodes: 2, replication: 1, blockSizeBytes: BLOCK });
  const node = cluster.node("n0");
  const notMine = Array.from({ length: 50 }, (_, i) => ref(i))
    .filter((r) => cluster.owners(r)[0] === "n1")
    .slice(0, 4);
  for (const r of notMine) await node.store.writeBlock(r, new Uint8Array([1]));
  const dead = new Set([notMine[0]!.key(), notMine[1]!.key()]);
  const r = new Rebalancer({
    distributor: node.distributor,
    clock: cluster.clock,
    isDead: (candidate) => dead.has(candidate.key()),
    logger: cluster.logger,
  });
  const report = await r.runCycle();
  assert.equal(report.sentBlocks, 2);
  assert.equal(report.deletedBlocks, 4);
  assert.equal(node.store.usedBlocks(), 0);
  assert.deepEqual(
    cluster.node("n1").store.blockRefs().map((b) => b.key()).sort(),
    [notMine[2]!.key(), notMine[3]!.key()].sort(),
  );
});

Deno.test("Rebalancer: a copy leaves only once the owner flushed it", async () => {
  let flushFails = true;
  class FlakyFlushStore extends MemoryBlockStore {
    override async flush(): Promise<void> {
      if (flushFails) throw new Error("disk error");
    }
  }
  const cluster = await TestCluster.create({
    nodes: 2,
    replication: 1,
    blockSizeBytes: BLOCK,
    store: (uuid, options) =>
      uuid === "n1" ? new FlakyFlushStore(options) : new MemoryBlockStore(options),
  });
  const node = cluster.node("n0");
  const theirs = Array.from({ length: 50 }, (_, i) => ref(i)).find((r) =>
    cluster.owners(r)[0] === "n1"
  )!;
  await node.store.writeBlock(theirs, new Uint8Array([1]));
  const r = rebalancer(cluster, node.distributor);
  const first = await r.runCycle();
  assert.equal(first.sentBlocks, 1);
  assert.equal(first.keptBlocks, 1);
  assert.equal(await node.store.hasBlock(theirs), true);
  flushFails = false;
  const second = await r.runCycle();
  assert.equal(second.deletedBlocks, 1);
  assert.equal(await node.store.hasBlock(theirs), false);
});
