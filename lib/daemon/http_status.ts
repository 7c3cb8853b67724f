/**
 * torusd's HTTP status endpoint: `/healthz` (200 "ok" while the metadata
 * answers, 503 otherwise) and `/metrics` in the Prometheus text format, with
 * the original's metric names where one exists.
 *
 * @module
 */
import { crcFailures } from "../blockset/crc_layer.ts";
import { ioThreadStats } from "../storage/io_thread.ts";
import type { MetadataService } from "../metadata/metadata_service.ts";
import type { NbdServer } from "../nbd/server.ts";
import type { BlockStore } from "../storage/block_store.ts";
import { GC_TRIGGERS, type GcStatsSnapshot } from "./gc_stats.ts";

/** What the endpoint reports on. */
export interface StatusSources {
  store: BlockStore;
  metadata: MetadataService;
  nbd: () => NbdServer | null;
  /** The daemon's garbage collections so far; absent when it runs none. */
  gc?: () => GcStatsSnapshot;
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
  const storage = `{storage="current"}`;
  gauge("torus_storage_blocks", "Blocks stored.", sources.store.usedBlocks(), storage);
  gauge("torus_storage_blocks_total", "Block capacity.", sources.store.numBlocks(), storage);
  gauge("torus_storage_block_bytes", "Size of a block.", sources.store.blockSizeBytes, storage);
  const deltas = sources.store.deltaBlocks?.();
  if (deltas !== undefined) {
    gauge("torus_storage_delta_blocks", "Blocks stored as deltas of another.", deltas, storage);
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
  const nbd = sources.nbd();
  if (nbd) {
    const stats = nbd.stats();
    gauge("torus_nbd_connections", "Open NBD connections.", stats.connections);
    gauge("torus_nbd_requests_in_flight", "NBD requests in flight.", stats.requestsInFlight);
    gauge("torus_nbd_buffered_bytes", "Bytes held for NBD requests.", stats.bufferedBytes);
  }
  return lines.join("\n") + "\n";
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
