import assert from "node:assert/strict";
import { ManualClock } from "../clock.ts";
import { MemoryMetadata } from "../metadata/memory_metadata.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { RawClient } from "../nbd/_raw_client.ts";
import { NBD_LATENCY_BUCKETS_SECONDS, NBD_LATENCY_SAMPLE_EVERY } from "../nbd/counters.ts";
import { MemoryExportProvider } from "../nbd/memory_export.ts";
import { NBD_CMD_READ, NBD_CMD_WRITE } from "../nbd/protocol.ts";
import { NbdServer } from "../nbd/server.ts";
import type { ClusterNodeStatus } from "../node/cluster_node.ts";
import { GcStats } from "./gc_stats.ts";
import { renderMetrics, type StatusSources } from "./http_status.ts";

function sources(gc?: GcStats): StatusSources {
  return {
    store: new MemoryBlockStore({ blockSizeBytes: 4096, numBlocks: 16 }),
    metadata: new MemoryMetadata({ clock: new ManualClock(0) }),
    nbd: () => null,
    gc: gc && (() => gc.snapshot()),
  };
}

/** The value of the sample `name` (with its labels) in `text`; fails when it is not exactly once. */
function sample(text: string, name: string): number {
  const lines = text.split("\n").filter((line) => line.startsWith(`${name} `));
  assert.equal(lines.length, 1, `${name}: ${lines.length} samples`);
  return Number(lines[0]!.slice(name.length + 1));
}

Deno.test("renderMetrics: garbage collections by trigger, in seconds, with their totals", () => {
  const gc = new GcStats();
  gc.record("full", 1500, { kind: "ran", deletedBlocks: 40 });
  gc.record("full", 500, { kind: "ran", deletedBlocks: 2 });
  gc.record("interval", 20, { kind: "skipped" });
  const text = renderMetrics(sources(gc));
  assert.equal(sample(text, 'torus_gc_runs_total{trigger="full"}'), 2);
  assert.equal(sample(text, 'torus_gc_runs_total{trigger="interval"}'), 1);
  assert.equal(sample(text, 'torus_gc_runs_total{trigger="close"}'), 0);
  assert.equal(sample(text, 'torus_gc_seconds_total{trigger="full"}'), 2);
  assert.equal(sample(text, 'torus_gc_max_seconds{trigger="full"}'), 1.5);
  assert.equal(sample(text, 'torus_gc_seconds_total{trigger="interval"}'), 0.02);
  assert.equal(sample(text, "torus_gc_deleted_blocks_total"), 42);
  assert.equal(sample(text, "torus_gc_skipped_total"), 1);
  assert.equal(sample(text, "torus_gc_failed_total"), 0);
  assert.match(text, /^# TYPE torus_gc_runs_total counter$/m);
  assert.match(text, /^# TYPE torus_gc_max_seconds gauge$/m);
  assert.equal(sample(text, 'torus_storage_blocks_total{storage="current"}'), 16);
});

Deno.test("renderMetrics: no garbage-collection metrics from a process that runs none", () => {
  const text = renderMetrics(sources());
  assert.doesNotMatch(text, /torus_gc_/);
  assert.ok(text.endsWith("\n"));
});

Deno.test("renderMetrics: NBD requests by command, with a cumulative latency histogram", async () => {
  let nowMs = 0;
  const server = NbdServer.listen({
    provider: new MemoryExportProvider([{ name: "disk", sizeBytes: 1 << 20 }]),
    port: 0,
    nowMs: () => (nowMs += 0.5) - 0.5, // a timed request takes 0.5 ms
  });
  try {
    const client = await RawClient.connect(server.port);
    await client.attach("disk");
    const payload = new Uint8Array(4096);
    await client.call(
      { type: NBD_CMD_WRITE, flags: 0, offsetBytes: 0, lengthBytes: 4096 },
      payload,
    );
    // The first read of every NBD_LATENCY_SAMPLE_EVERY is timed: two of these.
    for (let i = 0; i < NBD_LATENCY_SAMPLE_EVERY + 1; i++) {
      await client.call({ type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 4096 });
    }
    await client.call({ type: NBD_CMD_READ, flags: 0, offsetBytes: 1 << 20, lengthBytes: 512 });
    client.close();
    const text = renderMetrics({ ...sources(), nbd: () => server });
    const reads = NBD_LATENCY_SAMPLE_EVERY + 2;
    assert.equal(sample(text, 'torus_nbd_requests_total{command="read"}'), reads);
    assert.equal(sample(text, 'torus_nbd_request_errors_total{command="read"}'), 1);
    assert.equal(sample(text, 'torus_nbd_request_bytes_total{command="read"}'), (reads - 1) * 4096);
    assert.equal(sample(text, 'torus_nbd_requests_total{command="write"}'), 1);
    assert.equal(sample(text, 'torus_nbd_requests_total{command="trim"}'), 0);
    const histogram = "torus_nbd_request_duration_seconds";
    assert.match(text, new RegExp(`^# TYPE ${histogram} histogram$`, "m"));
    // 0.5 ms is above the 0.4 ms bound and within the 0.8 ms one; buckets are cumulative.
    assert.equal(sample(text, `${histogram}_bucket{command="read",le="0.0004"}`), 0);
    assert.equal(sample(text, `${histogram}_bucket{command="read",le="0.0008"}`), 2);
    assert.equal(sample(text, `${histogram}_bucket{command="read",le="+Inf"}`), 2);
    assert.equal(sample(text, `${histogram}_sum{command="read"}`), 0.001);
    assert.equal(sample(text, `${histogram}_count{command="read"}`), 2);
    const bounds = [...text.matchAll(/_bucket\{command="write",le="([^"]+)"\}/g)].map((m) => m[1]);
    assert.equal(bounds.length, NBD_LATENCY_BUCKETS_SECONDS.length + 1);
    assert.equal(bounds[0], "0.00005");
    assert.equal(sample(text, "torus_nbd_connections_accepted_total"), 1);
    assert.equal(sample(text, "torus_nbd_connections_refused_total"), 0);
  } finally {
    await server.close();
  }
});

Deno.test("renderMetrics: a cluster node's ring, peers, distributor and rebalancer", () => {
  const status: ClusterNodeStatus = {
    ringVersion: 7,
    ringMembers: 3,
    replication: 2,
    livePeers: 4,
    heartbeats: 12,
    failedHeartbeats: 1,
    evictions: 1,
    distributor: {
      cacheHits: 5,
      localReads: 10,
      remoteReads: 20,
      failedReads: 2,
      invalidCopies: 3,
      writes: 40,
      handoffWrites: 4,
      degradedWrites: 6,
      failedWrites: 1,
    },
    peerListener: { connections: 2, requestsInFlight: 1, bufferedBytes: 4096 },
    rebalance: {
      rebalancing: true,
      cycleSentBlocks: 9,
      lastRebalanceBlocks: 30,
      lastRebalanceFinishMs: 1_700_000_000_500,
    },
  };
  const { store: _store, ...rest } = sources();
  const text = renderMetrics({ ...rest, cluster: () => status });
  assert.doesNotMatch(text, /torus_storage_blocks/, "a client has no store");
  const expected: [string, number][] = [
    ["torus_ring_version", 7],
    ["torus_ring_members", 3],
    ["torus_ring_replication", 2],
    ["torus_server_peers_total", 4],
    ["torus_server_heartbeats", 12],
    ["torus_server_heartbeat_failures", 1],
    ["torus_server_evictions_total", 1],
    ["torus_distributor_block_requests_total", 37],
    ["torus_distributor_block_cached_blocks", 5],
    ["torus_distributor_block_local_blocks", 10],
    ["torus_distributor_block_peer_blocks", 20],
    ["torus_distributor_block_request_failures", 2],
    ["torus_distributor_invalid_copies_total", 3],
    ["torus_distributor_block_writes_total", 40],
    ["torus_distributor_block_write_failures", 1],
    ["torus_distributor_handoff_writes_total", 4],
    ["torus_distributor_degraded_writes_total", 6],
    ["torus_peer_connections", 2],
    ["torus_peer_requests_in_flight", 1],
    ["torus_peer_buffered_bytes", 4096],
    ["torus_rebalance_active", 1],
    ["torus_rebalance_cycle_sent_blocks", 9],
    ["torus_rebalance_last_cycle_blocks", 30],
    ["torus_rebalance_last_finish_timestamp_seconds", 1_700_000_000.5],
  ];
  for (const [name, value] of expected) assert.equal(sample(text, name), value, name);
  const bare = renderMetrics({
    ...rest,
    cluster: () => ({ ...status, peerListener: null, rebalance: null }),
  });
  assert.doesNotMatch(bare, /torus_peer_|torus_rebalance_/);
});
