/**
 * The HTTP status endpoint of torusd and `torusblk nbdserve`: `/healthz`
 * (200 "ok" while the metadata answers, 503 otherwise) and `/metrics` in the
 * Prometheus text format, with the original's metric names where one exists.
 * Documentation/architecture.md ("Metrics") lists them.
 *
 * @module
 */
import { crcFailures } from "../blockset/crc_layer.ts";
import { ioThreadStats } from "../storage/io_thread.ts";
import type { MetadataService } from "../metadata/metadata_service.ts";
import {
  NBD_COUNTED_COMMANDS,
  NBD_LATENCY_BUCKETS_SECONDS,
  NBD_LATENCY_SAMPLE_EVERY,
  type NbdCommandCounts,
  type NbdCountersSnapshot,
} from "../nbd/counters.ts";
import type { NbdServer } from "../nbd/server.ts";
import type { ClusterNodeStatus } from "../node/cluster_node.ts";
import type { BlockStore } from "../storage/block_store.ts";
import { GC_TRIGGERS, type GcStatsSnapshot } from "./gc_stats.ts";

/** What the endpoint reports on. */
export interface StatusSources {
  /** The block store of this process; absent on a cluster client, which stores nothing. */
  store?: BlockStore;
  metadata: MetadataService;
  nbd: () => NbdServer | null;
  /** The daemon's garbage collections so far; absent when it runs none. */
  gc?: () => GcStatsSnapshot;
  /** The cluster node's ring, peers, distributor and rebalancer; absent on one machine. */
  cluster?: () => ClusterNodeStatus;
}

/** Status requests are rare: close each connection so shutdown never waits on an idle one. */
const CLOSE = { connection: "close" };

/** Appends one metric of one sample, with its HELP and TYPE lines. */
function metric(
  lines: string[],
  type: "counter" | "gauge",
  name: string,
  help: string,
  value: number,
  labels = "",
): void {
  lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name}${labels} ${value}`);
}

/** Renders the metrics in the Prometheus text format. */
export function renderMetrics(sources: StatusSources): string {
  const lines: string[] = [];
  const gauge = (name: string, help: string, value: number, labels = "") =>
    metric(lines, "gauge", name, help, value, labels);
  const counter = (name: string, help: string, value: number) =>
    metric(lines, "counter", name, help, value);
  const store = sources.store;
  if (store) {
    const storage = `{storage="current"}`;
    gauge("torus_storage_blocks", "Blocks stored.", store.usedBlocks(), storage);
    gauge("torus_storage_blocks_total", "Block capacity.", store.numBlocks(), storage);
    gauge("torus_storage_block_bytes", "Size of a block.", store.blockSizeBytes, storage);
    const deltas = store.deltaBlocks?.();
    if (deltas !== undefined) {
      gauge("torus_storage_delta_blocks", "Blocks stored as deltas of another.", deltas, storage);
    }
  }
  counter(
    "torus_blockset_crc_failed_blocks",
    "Blocks that failed their checksum.",
    crcFailures.count,
  );
  counter(
    "torus_storage_io_thread_jobs_total",
    "Reads and writes the I/O thread ran.",
    ioThreadStats.jobs,
  );
  counter(
    "torus_storage_io_thread_bytes_total",
    "Bytes the I/O thread read and wrote.",
    ioThreadStats.bytes,
  );
  const gc = sources.gc?.();
  if (gc) renderGc(lines, gc);
  const cluster = sources.cluster?.();
  if (cluster) renderCluster(lines, cluster);
  const nbd = sources.nbd();
  if (nbd) {
    const stats = nbd.stats();
    gauge("torus_nbd_connections", "Open NBD connections.", stats.connections);
    gauge("torus_nbd_requests_in_flight", "NBD requests in flight.", stats.requestsInFlight);
    gauge("torus_nbd_buffered_bytes", "Bytes held for NBD requests.", stats.bufferedBytes);
    renderNbdCounters(lines, nbd.counters());
  }
  return lines.join("\n") + "\n";
}

/** A histogram bound as Prometheus' `le` label: the shortest decimal, e.g. `0.0004`. */
function formatBound(seconds: number): string {
  return String(Number(seconds.toPrecision(6)));
}

/** Appends the NBD server's request counters and latency histograms, per command. */
function renderNbdCounters(lines: string[], counters: NbdCountersSnapshot): void {
  const { commands } = counters;
  const perCommand = (name: string, help: string, value: (counts: NbdCommandCounts) => number) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
    for (const command of NBD_COUNTED_COMMANDS) {
      lines.push(`${name}{command="${command}"} ${value(commands[command])}`);
    }
  };
  perCommand(
    "torus_nbd_requests_total",
    "NBD requests answered, by command.",
    (counts) => counts.requests,
  );
  perCommand(
    "torus_nbd_request_errors_total",
    "NBD requests answered with an error, by command.",
    (counts) => counts.errors,
  );
  perCommand(
    "torus_nbd_request_bytes_total",
    "Bytes covered by successful NBD requests, by command.",
    (counts) => counts.bytes,
  );
  const name = "torus_nbd_request_duration_seconds";
  lines.push(
    `# HELP ${name} Time from an NBD request's dispatch to its reply written, by command ` +
      `(one request in ${NBD_LATENCY_SAMPLE_EVERY} is timed).`,
    `# TYPE ${name} histogram`,
  );
  for (const command of NBD_COUNTED_COMMANDS) {
    const counts = commands[command];
    let cumulative = 0;
    NBD_LATENCY_BUCKETS_SECONDS.forEach((bound, bucket) => {
      cumulative += counts.buckets[bucket]!;
      lines.push(`${name}_bucket{command="${command}",le="${formatBound(bound)}"} ${cumulative}`);
    });
    lines.push(
      `${name}_bucket{command="${command}",le="+Inf"} ${counts.timed}`,
      `${name}_sum{command="${command}"} ${counts.seconds}`,
      `${name}_count{command="${command}"} ${counts.timed}`,
    );
  }
  metric(
    lines,
    "counter",
    "torus_nbd_connections_accepted_total",
    "NBD connections accepted.",
    counters.connectionsAccepted,
  );
  metric(
    lines,
    "counter",
    "torus_nbd_connections_refused_total",
    "NBD connections closed on arrival: the server was at its connection limit.",
    counters.connectionsRefused,
  );
}

/** Appends a cluster node's ring, heartbeat, distributor, peer-listener and rebalancer metrics. */
function renderCluster(lines: string[], status: ClusterNodeStatus): void {
  const gauge = (name: string, help: string, value: number) =>
    metric(lines, "gauge", name, help, value);
  const counter = (name: string, help: string, value: number) =>
    metric(lines, "counter", name, help, value);
  gauge("torus_ring_version", "Version of the ring in use.", status.ringVersion);
  gauge("torus_ring_members", "Members of the ring in use.", status.ringMembers);
  gauge("torus_ring_replication", "Replication factor of the ring in use.", status.replication);
  gauge("torus_server_peers_total", "Live peers as of the last heartbeat.", status.livePeers);
  counter("torus_server_heartbeats", "Heartbeats that registered this process.", status.heartbeats);
  counter(
    "torus_server_heartbeat_failures",
    "Heartbeats that failed (metadata unreachable, lease lost).",
    status.failedHeartbeats,
  );
  const d = status.distributor;
  counter(
    "torus_distributor_block_requests_total",
    "Block reads asked of the distributor.",
    d.cacheHits + d.localReads + d.remoteReads + d.failedReads,
  );
  counter("torus_distributor_block_cached_blocks", "Block reads served by the cache.", d.cacheHits);
  counter("torus_distributor_block_local_blocks", "Block reads served locally.", d.localReads);
  counter("torus_distributor_block_peer_blocks", "Block reads served by a peer.", d.remoteReads);
  counter("torus_distributor_block_request_failures", "Block reads that failed.", d.failedReads);
  counter(
    "torus_distributor_invalid_copies_total",
    "Copies skipped on read because they were stale or corrupt.",
    d.invalidCopies,
  );
  counter("torus_distributor_block_writes_total", "Block writes acknowledged.", d.writes);
  counter("torus_distributor_block_write_failures", "Block writes that failed.", d.failedWrites);
  counter(
    "torus_distributor_handoff_writes_total",
    "Acknowledged writes that needed a peer beyond the block's owners.",
    d.handoffWrites,
  );
  counter(
    "torus_distributor_degraded_writes_total",
    "Acknowledged writes on a ring with fewer members than its replication.",
    d.degradedWrites,
  );
  const peers = status.peerListener;
  if (peers) {
    gauge("torus_peer_connections", "Open peer connections.", peers.connections);
    gauge("torus_peer_requests_in_flight", "Peer requests in flight.", peers.requestsInFlight);
    gauge("torus_peer_buffered_bytes", "Bytes held for peer requests.", peers.bufferedBytes);
  }
  const rebalance = status.rebalance;
  if (rebalance) {
    gauge(
      "torus_rebalance_active",
      "1 while the rebalancer has blocks to move or a ring change to check.",
      rebalance.rebalancing ? 1 : 0,
    );
    gauge(
      "torus_rebalance_cycle_sent_blocks",
      "Blocks sent to their owners in the cycle running now.",
      rebalance.cycleSentBlocks,
    );
    gauge(
      "torus_rebalance_last_cycle_blocks",
      "Blocks sent in the last finished cycle.",
      rebalance.lastRebalanceBlocks,
    );
    gauge(
      "torus_rebalance_last_finish_timestamp_seconds",
      "When the last cycle finished, in seconds since the epoch (0: never).",
      rebalance.lastRebalanceFinishMs / 1000,
    );
  }
}

/** Appends the garbage-collection metrics: per trigger, and the totals. */
function renderGc(lines: string[], gc: GcStatsSnapshot): void {
  const perTrigger = (
    name: string,
    type: "counter" | "gauge",
    help: string,
    value: (trigger: (typeof GC_TRIGGERS)[number]) => number,
  ) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const trigger of GC_TRIGGERS) {
      lines.push(`${name}{trigger="${trigger}"} ${value(trigger)}`);
    }
  };
  perTrigger(
    "torus_gc_runs_total",
    "counter",
    "Garbage collections finished, by trigger (full: a write found the store full and waited).",
    (trigger) => gc.byTrigger[trigger].runs,
  );
  perTrigger(
    "torus_gc_seconds_total",
    "counter",
    "Time garbage collections took.",
    (trigger) => gc.byTrigger[trigger].totalMs / 1000,
  );
  perTrigger(
    "torus_gc_max_seconds",
    "gauge",
    "The longest garbage collection so far.",
    (trigger) => gc.byTrigger[trigger].maxMs / 1000,
  );
  const total = (name: string, help: string, value: number) =>
    metric(lines, "counter", name, help, value);
  total("torus_gc_deleted_blocks_total", "Blocks garbage collection deleted.", gc.deletedBlocks);
  total(
    "torus_gc_skipped_total",
    "Garbage collections skipped: the metadata was unavailable.",
    gc.skipped,
  );
  total("torus_gc_failed_total", "Garbage collections that failed.", gc.failed);
}

/** Serves `/healthz` and `/metrics` on `hostname:port`. */
export function serveStatus(
  sources: StatusSources,
  hostname: string,
  port: number,
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname, port, onListen: () => {} }, async (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/healthz") {
      try {
        await sources.metadata.globalMetadata();
        return new Response("ok\n", { headers: CLOSE });
      } catch (error) {
        return new Response(`metadata unavailable: ${(error as Error).message}\n`, {
          status: 503,
          headers: CLOSE,
        });
      }
    }
    if (path === "/metrics") {
      return new Response(renderMetrics(sources), {
        headers: { ...CLOSE, "content-type": "text/plain; version=0.0.4" },
      });
    }
    return new Response("not found: try /healthz or /metrics\n", { status: 404, headers: CLOSE });
  });
}
