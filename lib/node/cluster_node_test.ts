import assert from "node:assert/strict";
import { openBlockFile } from "../block/block_volume.ts";
import { SystemClock } from "../clock.ts";
import { silentLogger } from "../log.ts";
import { MemoryMetadata, MemoryMetadataStore } from "../metadata/memory_metadata.ts";
import { MemoryTransport } from "../peer/memory_transport.ts";
import { Prng } from "../prng.ts";
import { ClusterNode, type ClusterNodeOptions, initializeCluster } from "./cluster_node.ts";

const BLOCK = 64 * 1024;
const VOLUME_BYTES = 4 * 1024 * 1024;

/** A cluster on memory metadata and the memory transport, with nodes in temporary directories. */
async function cluster(nodeCount: number, replication: number) {
  const clock = new SystemClock();
  const store = new MemoryMetadataStore();
  const transport = new MemoryTransport({ clock });
  const root = await Deno.makeTempDir({ prefix: "torus-cluster-node-" });
  const admin = new MemoryMetadata({ clock, store });
  await initializeCluster(admin, {
    global: { blockSizeBytes: BLOCK, defaultBlockSpec: "crc,base" },
    replication,
  });
  const base = (): ClusterNodeOptions => ({
    openMetadata: (uuid) => Promise.resolve(new MemoryMetadata({ clock, store, uuid })),
    location: "memory",
    initAdvice: "initializeCluster()",
    clock,
    logger: silentLogger,
    transport: () => transport,
  });
  const nodes: ClusterNode[] = [];
  for (let i = 0; i < nodeCount; i++) {
    nodes.push(
      await ClusterNode.open({
        ...base(),
        dataDir: `${root}/node-${i}`,
        storeSize: { bytes: 64 * BLOCK },
        peerAddress: `mem://node-${i}`,
        autoJoin: true,
      }),
    );
  }
  return {
    nodes,
    transport,
    client: () => ClusterNode.open(base()),
    async close() {
      for (const node of nodes) await node.close().catch(() => {});
      await admin.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

Deno.test("ClusterNode: nodes auto-join, a volume written by one client reads back through another, also with a node gone", async () => {
  const c = await cluster(3, 2);
  try {
    // Every node joined, and every node sees the same ring.
    for (const node of c.nodes) assert.equal(node.ring.members().length, 3);
    assert.deepEqual(
      new Set(c.nodes[0]!.ring.members().map((m) => m.uuid)),
      new Set(c.nodes.map((n) => n.uuid)),
    );
    // Ring changes make every node reload the peer list (no waiting for a heartbeat).
    for (let waited = 0; c.nodes[0]!.peers().length < 3 && waited < 2000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(c.nodes[0]!.peers().length, 3);

    const writer = await c.client();
    const data = new Prng(5).fill(new Uint8Array(VOLUME_BYTES));
    try {
      const context = await writer.volumes();
      await context.metadata.createVolume("v", VOLUME_BYTES);
      const file = await openBlockFile(context, "v", { lease: (await writer.lease()).lease });
      await file.writeAt(data, 0);
      await file.writeAt(new Uint8Array([1, 2, 3]), 70_000); // an in-place range write
      data.set([1, 2, 3], 70_000);
      await file.close();
    } finally {
      await writer.close();
    }
    // The blocks are on the nodes, two copies each, none on the client.
    const stored = c.nodes.reduce((sum, node) => sum + node.distributor.localStore.usedBlocks(), 0);
    assert.ok(stored >= 2 * (VOLUME_BYTES / BLOCK), `only ${stored} block copies stored`);

    const reader = await c.client();
    try {
      const file = await openBlockFile(await reader.volumes(), "v", { readOnly: true });
      assert.deepEqual(await file.readAt(0, VOLUME_BYTES), data);
      // One node goes away: every block still has a copy.
      c.transport.drop(c.nodes[1]!.address);
      assert.deepEqual(await file.readAt(0, VOLUME_BYTES), data);
      await file.close();
    } finally {
      await reader.close();
    }
  } finally {
    await c.close();
  }
});

Deno.test("ClusterNode: an uninitialized cluster says what to run", async () => {
  const clock = new SystemClock();
  const store = new MemoryMetadataStore();
  await assert.rejects(
    ClusterNode.open({
      openMetadata: (uuid) => Promise.resolve(new MemoryMetadata({ clock, store, uuid })),
      location: "etcd 127.0.0.1:1",
      initAdvice: "torusctl init --etcd 127.0.0.1:1",
      clock,
      logger: silentLogger,
      transport: () => new MemoryTransport({ clock }),
    }),
    /not initialized: run torusctl init --etcd 127.0.0.1:1/,
  );
});
