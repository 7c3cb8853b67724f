import assert from "node:assert/strict";
import { ManualClock } from "../clock.ts";
import { AlreadyExistsError, PeerNotFoundError } from "../errors.ts";
import { MemoryMetadata } from "../metadata/memory_metadata.ts";
import type { PeerRecord } from "../metadata/metadata_service.ts";
import { initializeCluster } from "../node/cluster_node.ts";
import { RingType } from "../ring/ring.ts";
import {
  addPeers,
  getRing,
  listPeers,
  manualChange,
  removePeers,
  setReplication,
} from "./cluster_ops.ts";

const BLOCK = 4096;

async function setup(peerCount: number) {
  const clock = new ManualClock(1_700_000_000_000);
  const metadata = new MemoryMetadata({ clock });
  await initializeCluster(metadata, {
    global: { blockSizeBytes: BLOCK, defaultBlockSpec: "crc,base" },
  });
  const lease = await metadata.grantLease(30_000);
  const peers: PeerRecord[] = [];
  for (let i = 0; i < peerCount; i++) {
    const peer: PeerRecord = {
      uuid: `uuid-${i}`,
      address: `tdp://10.0.0.${i}:40000`,
      lastSeenMs: clock.nowMs(),
      totalBlocks: 100,
      usedBlocks: 10 * i,
      rebalancing: false,
      lastRebalanceFinishMs: 0,
      lastRebalanceBlocks: 0,
      protocolVersion: 1,
    };
    await metadata.registerPeer(lease, peer);
    peers.push(peer);
  }
  return { metadata, clock, lease, peers };
}

Deno.test("cluster ops: peers join by address or uuid, list-peers shows members, usage and the missing", async () => {
  const { metadata, lease } = await setup(3);
  let listing = await listPeers(metadata);
  assert.deepEqual(listing.rows.map((row) => row.member), ["Avail", "Avail", "Avail"]);
  assert.equal(listing.ring.version, 1);

  const ring = await addPeers(metadata, ["tdp://10.0.0.0:40000", "uuid-1"]);
  assert.equal(ring.version, 2);
  assert.deepEqual(ring.members().map((m) => m.uuid).sort(), ["uuid-0", "uuid-1"]);
  await assert.rejects(addPeers(metadata, ["uuid-0"]), AlreadyExistsError);
  await assert.rejects(addPeers(metadata, ["nobody"]), PeerNotFoundError);
  assert.equal((await addPeers(metadata, [], { allPeers: true })).members().length, 3);

  listing = await listPeers(metadata);
  assert.deepEqual(listing.rows.map((row) => row.member), ["OK", "OK", "OK"]);
  assert.equal(listing.usage, (0 + 10 + 20) / 300);
  assert.equal(listing.balanced, true);

  // A member whose heartbeat stopped shows as DOWN and needs --force to go.
  await metadata.revokeLease(lease);
  listing = await listPeers(metadata);
  assert.deepEqual(listing.rows.map((row) => `${row.uuid} ${row.member}`).sort(), [
    "uuid-0 DOWN",
    "uuid-1 DOWN",
    "uuid-2 DOWN",
  ]);
  await assert.rejects(removePeers(metadata, ["uuid-2"]), /--force/);
  const after = await removePeers(metadata, ["uuid-2"], { force: true });
  assert.deepEqual(after.members().map((m) => m.uuid).sort(), ["uuid-0", "uuid-1"]);
  assert.equal((await getRing(metadata)).version, after.version);
});

Deno.test("cluster ops: replication and manual changes make new versions", async () => {
  const { metadata } = await setup(2);
  await addPeers(metadata, [], { allPeers: true });
  const replicated = await setReplication(metadata, 3);
  assert.equal(replicated.replication, 3);
  await assert.rejects(setReplication(metadata, 0), RangeError);
  const mod = await manualChange(metadata, {
    type: RingType.mod,
    uuids: ["uuid-1"],
    replication: 1,
  });
  assert.equal(mod.type, RingType.mod);
  assert.equal(mod.version, replicated.version + 1);
  assert.deepEqual(mod.members().map((m) => m.uuid), ["uuid-1"]);
  await assert.rejects(
    manualChange(metadata, { type: RingType.mod, uuids: ["ghost"], replication: 1 }),
    PeerNotFoundError,
  );
});
