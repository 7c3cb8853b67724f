/**
 * An NBD (Network Block Device) server library, independent of the storage
 * engine: it serves any {@linkcode NbdExport} found through an
 * {@linkcode NbdExportProvider} to NBD clients over TCP — the Linux kernel
 * client (`nbd-client`), qemu, libnbd tools (`nbdinfo`, `nbdcopy`, `nbdsh`),
 * fio's `nbd` engine.
 *
 * It speaks the fixed newstyle handshake (`NBD_OPT_EXPORT_NAME`, `NBD_OPT_GO`,
 * `NBD_OPT_INFO`, `NBD_OPT_LIST`, `NBD_OPT_ABORT`, `NBD_OPT_STRUCTURED_REPLY`,
 * and `NBD_OPT_LIST_META_CONTEXT` / `NBD_OPT_SET_META_CONTEXT` for the
 * `base:allocation` context) and the commands READ, WRITE (with FUA), FLUSH,
 * TRIM, WRITE_ZEROES (with NO_HOLE), BLOCK_STATUS (with REQ_ONE: which
 * ranges are holes, so that nbdcopy and qemu-img skip them) and DISC, with
 * many requests in flight per connection and replies matched by handle.
 *
 * - `protocol.ts`: pure encoders, decoders and constants of the wire protocol.
 * - `export.ts`: the interfaces the server serves and how errors map to NBD.
 * - `server.ts`: {@linkcode NbdServer}, the TCP server.
 * - `counters.ts`: {@linkcode NbdCounters}, requests, bytes and latencies per
 *   command, for `/metrics`.
 * - `memory_export.ts`: an in-memory export for tests (not for users' data).
 *
 * @example Usage
 * ```ts ignore
 * import { MemoryExportProvider, NbdServer } from "./mod.ts";
 * const server = NbdServer.listen({
 *   provider: new MemoryExportProvider([{ name: "disk", sizeBytes: 1 << 30 }]),
 *   port: 0,
 * });
 * // nbdinfo nbd://127.0.0.1:<port>/disk
 * await server.close();
 * ```
 *
 * @module
 */
export {
  errnoForError,
  ExportNotFoundError,
  type NbdExport,
  type NbdExportProvider,
  type NbdWriteOptions,
  type NbdWriteZeroesOptions,
  optionErrorForOpenError,
} from "./export.ts";
export {
  NBD_COUNTED_COMMANDS,
  NBD_LATENCY_BUCKETS_SECONDS,
  NBD_LATENCY_SAMPLE_EVERY,
  type NbdCommandCounts,
  type NbdCountedCommand,
  NbdCounters,
  type NbdCountersSnapshot,
  NOT_TIMED,
} from "./counters.ts";
export { type NbdLogEntry, type NbdLogger, type NbdLogLevel, silentLogger } from "./log.ts";
export { MemoryExportProvider, type MemoryExportSpec } from "./memory_export.ts";
export {
  NBD_ACCEPT_RETRY_DELAY_MS,
  NBD_CLOSE_TIMEOUT_MS,
  NBD_CONNECTION_BUFFERED_BYTES_MAX,
  NBD_CONNECTIONS_MAX,
  NBD_HANDSHAKE_TIMEOUT_MS,
  NBD_READ_BYTES_IN_FLIGHT_MAX,
  NBD_REQUESTS_IN_FLIGHT_MAX,
  NBD_SERVER_BUFFERED_BYTES_MAX,
  NbdServer,
  type NbdServerLimits,
  type NbdServerOptions,
  type NbdServerStats,
} from "./server.ts";
export * from "./protocol.ts";
