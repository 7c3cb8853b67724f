/**
 * `torusblk nbdserve`: serve the volumes of a data directory over NBD from a
 * client process. On one machine it opens the data directory's block store
 * itself, so it refuses to start (clearly, changing nothing) while torusd
 * has the store open; in cluster mode it reaches the blocks through the
 * peers instead. With an HTTP address it serves `/healthz` and `/metrics`
 * as torusd does (`http_status.ts`).
 *
 * @module
 */
import { VolumeExports } from "../block/volume_exports.ts";
import { collectGarbage } from "../block/gc.ts";
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import { formatNbdLogEntry } from "../nbd/log.ts";
import { NbdServer } from "../nbd/server.ts";
import { LocalNode } from "../node/local_node.ts";
import { ClusterNode, type ClusterNodeOptions } from "../node/cluster_node.ts";
import type { TorusNode } from "../node/torus_node.ts";
import { GcStats, runCountedCollection } from "./gc_stats.ts";
import { serveStatus } from "./http_status.ts";
import { MallocTuning } from "./malloc_tuning.ts";
import { HTTP_PORT_DEFAULT, NBD_PORT_DEFAULT, parseHostPort } from "./torusd.ts";

/** Options of {@linkcode NbdServe.start}. */
export interface NbdServeOptions {
  dataDir: string;
  /** `host:port` to listen on. */
  address: string;
  /** Serve every volume read-only, taking no locks. */
  readOnly: boolean;
  clock: Clock;
  logger: Logger;
  /** Serve a cluster's volumes as its client instead of a data directory's. */
  cluster?: Omit<ClusterNodeOptions, "clock" | "logger">;
  /** Serve `/healthz` and `/metrics` at this address (`host:port`); none when absent. */
  httpAddress?: string;
}

/** A running `nbdserve`. */
export class NbdServe {
  readonly server: NbdServer;
  #node: TorusNode;
  #exports: VolumeExports;
  #http: Deno.HttpServer<Deno.NetAddr> | null;
  /** The C heap's arena cap and periodic trim, as torusd has (`malloc_tuning.ts`). */
  #malloc: MallocTuning;

  private constructor(
    node: TorusNode,
    exports: VolumeExports,
    server: NbdServer,
    http: Deno.HttpServer<Deno.NetAddr> | null,
    malloc: MallocTuning,
  ) {
    this.#node = node;
    this.#exports = exports;
    this.server = server;
    this.#http = http;
    this.#malloc = malloc;
  }

  /** The HTTP status port, when serving. */
  get httpPort(): number | null {
    return this.#http?.addr.port ?? null;
  }

  /**
   * Opens the data directory (or joins the cluster) and listens.
   *
   * @throws {NotInitializedError} when the directory is not initialized.
   * @throws {TorusError} when the block store is in use by another process.
   * @throws {Deno.errors.AddrInUse} when a port is taken; nothing stays open.
   */
  static async start(options: NbdServeOptions): Promise<NbdServe> {
    const { hostname, port } = parseHostPort(options.address, NBD_PORT_DEFAULT);
    // Before anything is opened: a bad address leaves nothing behind.
    const httpAddress = options.httpAddress === undefined
      ? null
      : parseHostPort(options.httpAddress, HTTP_PORT_DEFAULT);
    const node: TorusNode = options.cluster
      ? await ClusterNode.open({ ...options.cluster, clock: options.clock, logger: options.logger })
      : await LocalNode.open({ dataDir: options.dataDir, clock: options.clock });
    let server: NbdServer | null = null;
    try {
      const context = await node.volumes();
      /** Collections run because a write found the local store full. */
      const gcStats = new GcStats();
      if (node instanceof LocalNode) {
        context.reclaimSpace = (reason) =>
          runCountedCollection(gcStats, reason, options, () => collectGarbage(context));
      }
      const exports = new VolumeExports({
        context,
        lease: async () => (await node.lease()).lease,
        readOnly: options.readOnly,
      });
      const nbd = NbdServer.listen({
        provider: exports,
        hostname,
        port,
        logger: (entry) => options.logger.log(entry.level, formatNbdLogEntry(entry)),
      });
      server = nbd;
      options.logger.log("info", `NBD on ${hostname}:${nbd.port}`);
      let http: Deno.HttpServer<Deno.NetAddr> | null = null;
      if (httpAddress !== null) {
        http = serveStatus(
          {
            store: node instanceof LocalNode
              ? context.store
              : node instanceof ClusterNode && node.isStorageNode
              ? node.distributor.localStore
              : undefined,
            metadata: node.metadata,
            nbd: () => nbd,
            gc: node instanceof LocalNode ? () => gcStats.snapshot() : undefined,
            cluster: node instanceof ClusterNode ? node.status.bind(node) : undefined,
          },
          httpAddress.hostname,
          httpAddress.port,
          options.logger,
        );
      }
      return new NbdServe(node, exports, nbd, http, MallocTuning.start(options.clock));
    } catch (error) {
      await server?.close().catch(() => {});
      await node.close().catch(() => {});
      throw error;
    }
  }

  /** Stops listening, lets requests finish, syncs and closes every volume. */
  async close(): Promise<void> {
    await this.#http?.shutdown();
    await this.server.close();
    await this.#exports.close();
    await this.#node.close();
    await this.#malloc.stop();
  }
}
