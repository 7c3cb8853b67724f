/**
 * The long-running processes: the storage daemon and the NBD server of a
 * client.
 *
 * - `torusd.ts`: {@linkcode Torusd}, which opens a data directory or joins a
 *   cluster, serves its volumes over NBD, and runs garbage collection.
 * - `nbd_serve.ts`: {@linkcode NbdServe}, `torusblk nbdserve`.
 * - `http_status.ts`: `/healthz` and Prometheus `/metrics`.
 * - `prometheus_text.ts`: {@linkcode PrometheusText}, the exposition format's writer.
 * - `gc_stats.ts`: {@linkcode GcStats}, what garbage collections cost, for `/metrics`.
 * - `malloc_tuning.ts`: {@linkcode MallocTuning}, the daemons' cap on glibc's
 *   heap arenas and periodic `malloc_trim`.
 *
 * @module
 */
export {
  GC_TRIGGERS,
  type GcOutcome,
  GcStats,
  type GcStatsSnapshot,
  type GcTrigger,
  type GcTriggerTotals,
  runCountedCollection,
} from "./gc_stats.ts";
export { renderMetrics, serveStatus, type StatusSources } from "./http_status.ts";
export {
  formatBound,
  type HistogramSeries,
  type Labels,
  type MetricType,
  PrometheusText,
} from "./prometheus_text.ts";
export {
  MALLOC_ARENAS_MAX,
  MALLOC_TRIM_INTERVAL_MS,
  MallocTuning,
  type MallocTuningOutcome,
} from "./malloc_tuning.ts";
export { NbdServe, type NbdServeOptions } from "./nbd_serve.ts";
export {
  ETCD_RETRY_MAX_MS,
  ETCD_RETRY_MIN_MS,
  GC_INTERVAL_MS,
  HTTP_PORT_DEFAULT,
  NBD_PORT_DEFAULT,
  parseHostPort,
  Torusd,
  type TorusdClusterOptions,
  type TorusdOptions,
} from "./torusd.ts";
