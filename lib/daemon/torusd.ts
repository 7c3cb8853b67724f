/**
 * The storage daemon on one machine: opens (and on first run initializes)
 * a data directory, keeps its block store, runs garbage collection on a
 * timer, and shuts down cleanly on SIGINT or SIGTERM.
 *
 * @module
 */
import { collectGarbage } from "../block/gc.ts";
import { checkNewBlockSize } from "../core/sector.ts";
import type { Clock } from "../clock.ts";
import { BLOCK_SIZE_BYTES_DEFAULT } from "../constants.ts";
import { MetadataUnavailableError, NotInitializedError, TorusError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { LocalNode } from "../node/local_node.ts";
import { ClusterNode, type ClusterNodeOptions } from "../node/cluster_node.ts";
import { formatSize, type SizeSpec } from "../size.ts";
import type { VolumeContext } from "../block/block_volume.ts";
import { VolumeExports } from "../block/volume_exports.ts";
import { formatNbdLogEntry } from "../nbd/log.ts";
import { NbdServer } from "../nbd/server.ts";
import { serveStatus } from "./http_status.ts";
import { MallocTuning } from "./malloc_tuning.ts";
import type { BlockStore } from "../storage/block_store.ts";
import type { BlockRef } from "../core/block_ref.ts";
import { SCRUB_BYTES_PER_SECOND_DEFAULT, Scrubber } from "../storage/scrubber.ts";
import { GcStats, type GcStatsSnapshot, type GcTrigger, runCountedCollection } from "./gc_stats.ts";

/** The NBD port when an address names none. */
export const NBD_PORT_DEFAULT = 10809;

/**
 * Splits `host:port` (or `[v6]:port`, or `host`).
 *
 * @throws {SyntaxError} on a malformed address or port.
 */
export function parseHostPort(
  address: string,
  defaultPort: number,
): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(address.trim());
  const hostname = match?.[1] ?? match?.[2] ?? "";
  const port = match?.[3] === undefined ? defaultPort : Number(match[3]);
  if (!match || hostname === "" || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new SyntaxError(
      `Cannot parse address "${address}": expected HOST:PORT, like 127.0.0.1:10809`,
    );
  }
  return { hostname, port };
}

/** The HTTP status port when an address names none. */
export const HTTP_PORT_DEFAULT = 4321;

/** First pause before retrying to reach etcd at start, in milliseconds; it doubles. */
export const ETCD_RETRY_MIN_MS = 1_000;
/** Longest pause between attempts to reach etcd at start, in milliseconds. */
export const ETCD_RETRY_MAX_MS = 30_000;

/** Time between garbage collections. */
export const GC_INTERVAL_MS = 60_000;

/** Options of {@linkcode Torusd.start}. */
export interface TorusdOptions {
  dataDir: string;
  /** Block store size; an existing store keeps its size when absent. */
  size?: SizeSpec;
  /** Initialize the data directory with defaults when it is not. */
  autoInit: boolean;
  /**
   * Block size `autoInit` gives a new data directory (default
   * {@linkcode BLOCK_SIZE_BYTES_DEFAULT}); an initialized one must match it.
   */
  blockSizeBytes?: number;
  clock: Clock;
  logger: Logger;
  /** Serve volumes over NBD at this address (`host:port`); none when absent. */
  nbdAddress?: string;
  /** Serve `/healthz` and `/metrics` at this address; none when absent. */
  httpAddress?: string;
  /**
   * Scrub the local block store at this many bytes per second (default
   * {@linkcode SCRUB_BYTES_PER_SECOND_DEFAULT}); 0 turns scrubbing off.
   */
  scrubBytesPerSecond?: number;
  /**
   * Cluster mode: the metadata is etcd's, blocks are placed on the ring's
   * peers. Embedded mode (the data directory's own metadata) when absent.
   */
  cluster?: TorusdClusterOptions;
}

/** What cluster mode adds to {@linkcode TorusdOptions}. */
export type TorusdClusterOptions = Pick<
  ClusterNodeOptions,
  | "openMetadata"
  | "location"
  | "initAdvice"
  | "transport"
  | "peerAddress"
  | "autoJoin"
  | "readLevel"
  | "writeLevel"
  | "readCacheBytes"
  | "autoEvictAfterMs"
>;

/** A running daemon. */
export class Torusd {
  readonly node: LocalNode | ClusterNode;
  readonly volumes: VolumeContext;
  #options: TorusdOptions;
  #gcTimer = 0;
  #gcRunning: Promise<void> | null = null;
  #gcStats = new GcStats();
  #closed = false;
  #nbd: NbdServer | null = null;
  #exports: VolumeExports | null = null;
  #http: Deno.HttpServer<Deno.NetAddr> | null = null;
  /** The C heap's arena cap and periodic trim (`malloc_tuning.ts`). */
  #malloc: MallocTuning;
  #scrubber: Scrubber | null = null;
  #scrubbing: Promise<void> | null = null;

  private constructor(
    node: LocalNode | ClusterNode,
    volumes: VolumeContext,
    options: TorusdOptions,
  ) {
    this.node = node;
    this.volumes = volumes;
    this.#options = options;
    this.#malloc = MallocTuning.start(options.clock);
    if (this.#malloc.outcome === "unavailable") {
      options.logger.log("debug", "C heap not tuned: glibc's mallopt is not available");
    }
  }

  /**
   * Opens the data directory and its block store.
   *
   * @throws {NotInitializedError} when it is not initialized and `autoInit` is off.
   * @throws {RangeError} when `blockSizeBytes` is not a power of two from 256 B to 16 MiB.
   */
  static async start(options: TorusdOptions): Promise<Torusd> {
    if (options.cluster) return await Torusd.#startCluster(options, options.cluster);
    // Before the data directory is created: a bad size leaves nothing behind.
    if (options.blockSizeBytes !== undefined) checkNewBlockSize(options.blockSizeBytes);
    const node = await LocalNode.open({
      dataDir: options.dataDir,
      create: true,
      clock: options.clock,
    });
    try {
      const blockSizeBytes = options.blockSizeBytes ?? BLOCK_SIZE_BYTES_DEFAULT;
      try {
        const global = await node.globalMetadata();
        if (options.blockSizeBytes !== undefined && global.blockSizeBytes !== blockSizeBytes) {
          throw new TorusError(
            `Cannot use block size ${blockSizeBytes}: ${options.dataDir} is initialized with blocks of ${global.blockSizeBytes} bytes (a block size cannot change)`,
          );
        }
      } catch (error) {
        if (!(error instanceof NotInitializedError) || !options.autoInit) throw error;
        await node.initialize({ blockSizeBytes, defaultBlockSpec: "crc,base" });
        options.logger.log(
          "info",
          `initialized ${options.dataDir} (block size ${formatSize(blockSizeBytes)}, crc,base)`,
        );
      }
      const volumes = await node.volumes(options.size);
      const daemon = new Torusd(node, volumes, options);
      volumes.reclaimSpace = (reason) => daemon.collectGarbage(reason);
      options.logger.log(
        "info",
        `serving ${options.dataDir}: ${volumes.store.numBlocks()} blocks of ${volumes.store.blockSizeBytes} bytes, ${volumes.store.usedBlocks()} used`,
      );
      daemon.#startScrub(volumes.store);
      if (options.nbdAddress) daemon.#serveNbd(options.nbdAddress);
      if (options.httpAddress) daemon.#serveHttp(options.httpAddress);
      daemon.#scheduleGc();
      return daemon;
    } catch (error) {
      await node.close().catch(() => {});
      throw error;
    }
  }

  static async #startCluster(
    options: TorusdOptions,
    cluster: TorusdClusterOptions,
  ): Promise<Torusd> {
    let node: ClusterNode;
    for (let pause = ETCD_RETRY_MIN_MS;; pause = Math.min(pause * 2, ETCD_RETRY_MAX_MS)) {
      try {
        node = await ClusterNode.open({
          ...cluster,
          clock: options.clock,
          logger: options.logger,
          dataDir: options.dataDir,
          storeSize: options.size,
        });
        break;
      } catch (error) {
        // Other nodes and clients depend on this one: wait for etcd rather than exit.
        if (!(error instanceof MetadataUnavailableError)) throw error;
        options.logger.log(
          "warn",
          `${error.message}; retrying in ${Math.round(pause / 1000)} s`,
        );
        await options.clock.sleep(pause);
      }
    }
    try {
      const volumes = await node.volumes();
      const daemon = new Torusd(node, volumes, options);
      const local = node.distributor.localStore;
      options.logger.log(
        "info",
        `node ${node.uuid} of the cluster at ${node.location}: ${
          node.address ? `serving peers at ${node.address}` : "a client (no --peer-address)"
        }, ${local.numBlocks()} blocks of ${local.blockSizeBytes} bytes, ${local.usedBlocks()} used`,
      );
      if (node.ring.members().length === 0) {
        options.logger.log(
          "warn",
          "the ring has no members yet: no I/O is possible until nodes join (torusd --auto-join, or torusctl peer add)",
        );
      }
      if (node.isStorageNode) {
        daemon.#startScrub(local, (ref) => node.distributor.repairLocalCopy(ref));
      }
      if (options.nbdAddress) daemon.#serveNbd(options.nbdAddress);
      if (options.httpAddress) daemon.#serveHttp(options.httpAddress);
      daemon.#scheduleGc();
      return daemon;
    } catch (error) {
      await node.close().catch(() => {});
      throw error;
    }
  }

  /** The NBD server, when serving. */
  get nbd(): NbdServer | null {
    return this.#nbd;
  }

  #serveNbd(address: string): void {
    const { hostname, port } = parseHostPort(address, NBD_PORT_DEFAULT);
    this.#exports = new VolumeExports({
      context: this.volumes,
      lease: async () => (await this.node.lease()).lease,
    });
    const logger = this.#options.logger;
    this.#nbd = NbdServer.listen({
      provider: this.#exports,
      hostname,
      port,
      logger: (entry) =>
        logger.log(entry.level, `nbd${entry.peer ? " " : ": "}${formatNbdLogEntry(entry)}`),
    });
    logger.log("info", `NBD on ${hostname}:${this.#nbd.port}`);
  }

  /** The HTTP status port, when serving. */
  get httpPort(): number | null {
    return this.#http?.addr.port ?? null;
  }

  #serveHttp(address: string): void {
    const { hostname, port } = parseHostPort(address, HTTP_PORT_DEFAULT);
    this.#http = serveStatus(
      {
        store: this.node instanceof ClusterNode
          ? this.node.distributor.localStore
          : this.volumes.store,
        metadata: this.node.metadata,
        nbd: () => this.#nbd,
        gc: () => this.#gcStats.snapshot(),
        scrub: this.#scrubber ? this.#scrubber.status.bind(this.#scrubber) : undefined,
        cluster: this.node instanceof ClusterNode ? this.node.status.bind(this.node) : undefined,
      },
      hostname,
      port,
      this.#options.logger,
    );
  }

  /**
   * Starts scrubbing `store` in the background, unless the rate is 0; a
   * corrupt block is rewritten with `repair` when given (a cluster node).
   */
  #startScrub(store: BlockStore, repair?: (ref: BlockRef) => Promise<string | null>): void {
    const rate = this.#options.scrubBytesPerSecond ?? SCRUB_BYTES_PER_SECOND_DEFAULT;
    if (rate === 0) return;
    this.#scrubber = new Scrubber({
      store,
      clock: this.#options.clock,
      logger: this.#options.logger,
      bytesPerSecond: rate,
      repair,
    });
    this.#scrubbing = this.#scrubber.run();
  }

  #scheduleGc(): void {
    if (this.#closed) return;
    this.#gcTimer = this.#options.clock.setTimer(GC_INTERVAL_MS, () => {
      this.#gcRunning = this.collectGarbage().finally(() => {
        this.#gcRunning = null;
        this.#scheduleGc();
      });
    });
  }

  /**
   * Runs one garbage collection now and counts it in {@linkcode Torusd.gcStats}
   * under `trigger`: `"interval"` (the default) for the periodic one, or why a
   * volume asked for it (`"full"`: a write found the store full and waits).
   */
  async collectGarbage(trigger: GcTrigger = "interval"): Promise<void> {
    const node = this.node;
    await runCountedCollection(
      this.#gcStats,
      trigger,
      this.#options,
      () => node instanceof ClusterNode ? node.collectGarbage() : collectGarbage(this.volumes),
    );
  }

  /** What this daemon's garbage collections cost so far (`/metrics` reports it). */
  get gcStats(): GcStatsSnapshot {
    return this.#gcStats.snapshot();
  }

  /** Stops timers, flushes and closes everything. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#options.clock.clearTimer(this.#gcTimer);
    this.#scrubber?.stop();
    await this.#scrubbing;
    await this.#gcRunning;
    await this.#http?.shutdown();
    await this.#nbd?.close();
    await this.#exports?.close();
    await this.node.close();
    await this.#malloc.stop();
    this.#options.logger.log("info", "stopped");
  }
}
