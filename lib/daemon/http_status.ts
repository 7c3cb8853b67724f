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
import type { DistributorStats } from "../distributor/distributor.ts";
import type { RebalanceStatus } from "../distributor/rebalancer.ts";
import {
  NBD_COUNTED_COMMANDS,
  NBD_LATENCY_BUCKETS_SECONDS,
  NBD_LATENCY_SAMPLE_EVERY,
  type NbdCommandCounts,
  type NbdCountersSnapshot,
} from "../nbd/counters.ts";
import type { NbdServer, NbdServerStats } from "../nbd/server.ts";
import type { ClusterNodeStatus } from "../node/cluster_node.ts";
import type { PeerListenerStats } from "../peer/transport.ts";
import type { Logger } from "../log.ts";
import type { BlockStore } from "../storage/block_store.ts";
import type { ScrubStatus } from "../storage/scrubber.ts";
import { GC_TRIGGERS, type GcStatsSnapshot, type GcTriggerTotals } from "./gc_stats.ts";
import { type MetricType, PrometheusText } from "./prometheus_text.ts";

/** What the endpoint reports on. */
export interface StatusSources {
  /** The block store of this process; absent on a cluster client, which stores nothing. */
  store?: BlockStore;
  metadata: MetadataService;
  nbd: () => NbdServer | null;
  /** The daemon's garbage collections so far; absent when it runs none. */
  gc?: () => GcStatsSnapshot;
  /** The scrubber's totals; absent when it does not run. */
  scrub?: () => ScrubStatus;
  /** The cluster node's ring, peers, distributor and rebalancer; absent on one machine. */
  cluster?: () => ClusterNodeStatus;
}

/** Status requests are rare: close each connection so shutdown never waits on an idle one. */
const CLOSE = { connection: "close" };

/** Renders the metrics in the Prometheus text format. */
export function renderMetrics(sources: StatusSources): string {
  const text = new PrometheusText();
  const store = sources.store;
  if (store) {
    const storage = { storage: "current" };
    text.gauge("torus_storage_blocks", "Blocks stored.", store.usedBlocks(), storage);
    text.gauge("torus_storage_blocks_total", "Block capacity.", store.numBlocks(), storage);
    text.gauge("torus_storage_block_bytes", "Size of a block.", store.blockSizeBytes, storage);
    const deltas = store.deltaBlocks?.();
    if (deltas !== undefined) {
      text.gauge(
        "torus_storage_delta_blocks",
        "Blocks stored as deltas of another.",
        deltas,
        storage,
      );
    }
  }
  text.counter(
    "torus_blockset_crc_failed_blocks",
    "Blocks that failed their checksum.",
    crcFailures.count,
  );
  text.counter(
    "torus_storage_io_thread_jobs_total",
    "Reads and writes the I/O thread ran.",
    ioThreadStats.jobs,
  );
  text.counter(
    "torus_storage_io_thread_bytes_total",
    "Bytes the I/O thread read and wrote.",
    ioThreadStats.bytes,
  );
  const gc = sources.gc?.();
  if (gc) renderGc(text, gc);
  const scrub = sources.scrub?.();
  if (scrub) renderAll(text, SCRUB, scrub);
  const cluster = sources.cluster?.();
  if (cluster) renderCluster(text, cluster);
  const nbd = sources.nbd();
  if (nbd) renderNbd(text, nbd.stats(), nbd.counters());
  return text.render();
}

/** A metric read off a value of type `T`: its type, name, help text, and how to read it. */
type MetricOf<T> = readonly [MetricType, string, string, (value: T) => number];

/** Appends one single-sample family per entry of `metrics`, read off `value`. */
function renderAll<T>(text: PrometheusText, metrics: readonly MetricOf<T>[], value: T): void {
  for (const [type, name, help, read] of metrics) text.metric(type, name, help, read(value));
}

/** Appends a family per entry of `metrics`, with a sample per label value of `values`. */
function renderPer<K extends string, T>(
  text: PrometheusText,
  label: string,
  values: readonly K[],
  metrics: readonly MetricOf<T>[],
  of: (key: K) => T,
): void {
  for (const [type, name, help, read] of metrics) {
    text.family(type, name, help, values.map((key) => [{ [label]: key }, read(of(key))] as const));
  }
}

const NBD_LOAD: readonly MetricOf<NbdServerStats>[] = [
  ["gauge", "torus_nbd_connections", "Open NBD connections.", (s) => s.connections],
  ["gauge", "torus_nbd_requests_in_flight", "NBD requests in flight.", (s) => s.requestsInFlight],
  ["gauge", "torus_nbd_buffered_bytes", "Bytes held for NBD requests.", (s) => s.bufferedBytes],
];

const NBD_PER_COMMAND: readonly MetricOf<NbdCommandCounts>[] = [
  ["counter", "torus_nbd_requests_total", "NBD requests answered, by command.", (c) => c.requests],
  [
    "counter",
    "torus_nbd_request_errors_total",
    "NBD requests answered with an error, by command.",
    (c) => c.errors,
  ],
  [
    "counter",
    "torus_nbd_request_bytes_total",
    "Bytes covered by successful NBD requests, by command.",
    (c) => c.bytes,
  ],
];

const NBD_CONNECTIONS: readonly MetricOf<NbdCountersSnapshot>[] = [
  [
    "counter",
    "torus_nbd_connections_accepted_total",
    "NBD connections accepted.",
    (c) => c.connectionsAccepted,
  ],
  [
    "counter",
    "torus_nbd_connections_refused_total",
    "NBD connections closed on arrival: the server was at its connection limit.",
    (c) => c.connectionsRefused,
  ],
];

/** Appends the NBD server's load, its request counters and latency histograms per command. */
function renderNbd(
  text: PrometheusText,
  load: NbdServerStats,
  counters: NbdCountersSnapshot,
): void {
  renderAll(text, NBD_LOAD, load);
  const { commands } = counters;
  renderPer(text, "command", NBD_COUNTED_COMMANDS, NBD_PER_COMMAND, (command) => commands[command]);
  text.histogram(
    "torus_nbd_request_duration_seconds",
    "Time from an NBD request's dispatch to its reply written, by command " +
      `(one request in ${NBD_LATENCY_SAMPLE_EVERY} is timed).`,
    NBD_LATENCY_BUCKETS_SECONDS,
    NBD_COUNTED_COMMANDS.map((command) => ({
      labels: { command },
      buckets: commands[command].buckets,
      sum: commands[command].seconds,
    })),
  );
  renderAll(text, NBD_CONNECTIONS, counters);
}

const CLUSTER: readonly MetricOf<ClusterNodeStatus>[] = [
  ["gauge", "torus_ring_version", "Version of the ring in use.", (s) => s.ringVersion],
  ["gauge", "torus_ring_members", "Members of the ring in use.", (s) => s.ringMembers],
  [
    "gauge",
    "torus_ring_replication",
    "Replication factor of the ring in use.",
    (s) => s.replication,
  ],
  ["gauge", "torus_server_peers_total", "Live peers as of the last heartbeat.", (s) => s.livePeers],
  [
    "counter",
    "torus_server_heartbeats",
    "Heartbeats that registered this process.",
    (s) => s.heartbeats,
  ],
  [
    "counter",
    "torus_server_heartbeat_failures",
    "Heartbeats that failed (metadata unreachable, lease lost).",
    (s) => s.failedHeartbeats,
  ],
  [
    "counter",
    "torus_server_evictions_total",
    "Ring members this node removed after they were down too long.",
    (s) => s.evictions,
  ],
];

const DISTRIBUTOR: readonly MetricOf<DistributorStats>[] = [
  [
    "counter",
    "torus_distributor_block_requests_total",
    "Block reads asked of the distributor.",
    (d) => d.cacheHits + d.localReads + d.remoteReads + d.failedReads,
  ],
  [
    "counter",
    "torus_distributor_block_cached_blocks",
    "Block reads served by the cache.",
    (d) => d.cacheHits,
  ],
  [
    "counter",
    "torus_distributor_block_local_blocks",
    "Block reads served locally.",
    (d) => d.localReads,
  ],
  [
    "counter",
    "torus_distributor_block_peer_blocks",
    "Block reads served by a peer.",
    (d) => d.remoteReads,
  ],
  [
    "counter",
    "torus_distributor_block_request_failures",
    "Block reads that failed.",
    (d) => d.failedReads,
  ],
  [
    "counter",
    "torus_distributor_invalid_copies_total",
    "Copies skipped on read because they were stale or corrupt.",
    (d) => d.invalidCopies,
  ],
  [
    "counter",
    "torus_distributor_block_writes_total",
    "Block writes acknowledged.",
    (d) => d.writes,
  ],
  [
    "counter",
    "torus_distributor_block_write_failures",
    "Block writes that failed.",
    (d) => d.failedWrites,
  ],
  [
    "counter",
    "torus_distributor_handoff_writes_total",
    "Acknowledged writes that needed a peer beyond the block's owners.",
    (d) => d.handoffWrites,
  ],
  [
    "counter",
    "torus_distributor_degraded_writes_total",
    "Acknowledged writes on a ring with fewer members than its replication.",
    (d) => d.degradedWrites,
  ],
];

const PEER_LISTENER: readonly MetricOf<PeerListenerStats>[] = [
  ["gauge", "torus_peer_connections", "Open peer connections.", (p) => p.connections],
  ["gauge", "torus_peer_requests_in_flight", "Peer requests in flight.", (p) => p.requestsInFlight],
  ["gauge", "torus_peer_buffered_bytes", "Bytes held for peer requests.", (p) => p.bufferedBytes],
];

const REBALANCE: readonly MetricOf<RebalanceStatus>[] = [
  [
    "gauge",
    "torus_rebalance_active",
    "1 while the rebalancer has blocks to move or a ring change to check.",
    (r) => r.rebalancing ? 1 : 0,
  ],
  [
    "gauge",
    "torus_rebalance_cycle_sent_blocks",
    "Blocks sent to their owners in the cycle running now.",
    (r) => r.cycleSentBlocks,
  ],
  [
    "gauge",
    "torus_rebalance_last_cycle_blocks",
    "Blocks sent in the last finished cycle.",
    (r) => r.lastRebalanceBlocks,
  ],
  [
    "gauge",
    "torus_rebalance_last_finish_timestamp_seconds",
    "When the last cycle finished, in seconds since the epoch (0: never).",
    (r) => r.lastRebalanceFinishMs / 1000,
  ],
];

/** Appends a cluster node's ring, heartbeat, distributor, peer-listener and rebalancer metrics. */
function renderCluster(text: PrometheusText, status: ClusterNodeStatus): void {
  renderAll(text, CLUSTER, status);
  renderAll(text, DISTRIBUTOR, status.distributor);
  if (status.peerListener) renderAll(text, PEER_LISTENER, status.peerListener);
  if (status.rebalance) renderAll(text, REBALANCE, status.rebalance);
}

const SCRUB: readonly MetricOf<ScrubStatus>[] = [
  [
    "counter",
    "torus_scrub_passes_total",
    "Scrub passes over the local store finished.",
    (s) => s.passes,
  ],
  [
    "counter",
    "torus_scrub_checked_blocks_total",
    "Blocks the scrubber read and found intact.",
    (s) => s.checkedBlocks,
  ],
  [
    "counter",
    "torus_scrub_corrupt_blocks_total",
    "Blocks the scrubber found corrupt (found again by each pass while they stay).",
    (s) => s.corruptBlocks,
  ],
  [
    "counter",
    "torus_scrub_repaired_blocks_total",
    "Corrupt blocks the scrubber rewrote from a peer's good copy.",
    (s) => s.repairedBlocks,
  ],
  [
    "counter",
    "torus_scrub_failed_blocks_total",
    "Blocks the scrubber could not read for another reason.",
    (s) => s.failedBlocks,
  ],
  ["counter", "torus_scrub_bytes_total", "Bytes the scrubber read.", (s) => s.bytes],
  [
    "gauge",
    "torus_scrub_pass_done_ratio",
    "How far the pass running now is (1 when resting).",
    (s) => s.passBlocks === 0 ? 1 : s.passDoneBlocks / s.passBlocks,
  ],
  [
    "gauge",
    "torus_scrub_last_pass_finish_timestamp_seconds",
    "When the last pass finished, in seconds since the epoch (0: never).",
    (s) => s.lastPassFinishMs / 1000,
  ],
];

const GC_PER_TRIGGER: readonly MetricOf<GcTriggerTotals>[] = [
  [
    "counter",
    "torus_gc_runs_total",
    "Garbage collections finished, by trigger (full: a write found the store full and waited).",
    (t) => t.runs,
  ],
  ["counter", "torus_gc_seconds_total", "Time garbage collections took.", (t) => t.totalMs / 1000],
  [
    "gauge",
    "torus_gc_max_seconds",
    "The longest garbage collection so far.",
    (t) => t.maxMs / 1000,
  ],
];

const GC_TOTALS: readonly MetricOf<GcStatsSnapshot>[] = [
  [
    "counter",
    "torus_gc_deleted_blocks_total",
    "Blocks garbage collection deleted.",
    (g) => g.deletedBlocks,
  ],
  [
    "counter",
    "torus_gc_skipped_total",
    "Garbage collections skipped: the metadata was unavailable.",
    (g) => g.skipped,
  ],
  ["counter", "torus_gc_failed_total", "Garbage collections that failed.", (g) => g.failed],
];

/** Appends the garbage-collection metrics: per trigger, and the totals. */
function renderGc(text: PrometheusText, gc: GcStatsSnapshot): void {
  renderPer(text, "trigger", GC_TRIGGERS, GC_PER_TRIGGER, (trigger) => gc.byTrigger[trigger]);
  renderAll(text, GC_TOTALS, gc);
}

/** Serves `/healthz` and `/metrics` on `hostname:port`, and logs the address to `logger`. */
export function serveStatus(
  sources: StatusSources,
  hostname: string,
  port: number,
  logger: Logger,
): Deno.HttpServer<Deno.NetAddr> {
  const server = Deno.serve({ hostname, port, onListen: () => {} }, async (request) => {
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
  logger.log("info", `HTTP status on http://${hostname}:${server.addr.port}/metrics`);
  return server;
}
