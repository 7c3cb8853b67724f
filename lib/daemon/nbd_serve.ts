/**
 * `torusblk nbdserve`: serve the volumes of a data directory over NBD from a
 * client process. On one machine it opens the data directory's block store
 * itself, so it refuses to start (clearly, changing nothing) while torusd
 * has the store open; in cluster mode it will reach the blocks through the
 * peers instead.
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
import { MallocTuning } from "./malloc_tuning.ts";
import { NBD_PORT_DEFAULT, parseHostPort } from "./torusd.ts";

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
}

/** A running `nbdserve`. */
export class NbdServe {
  readonly server: NbdServer;
  #node: TorusNode;
  #exports: VolumeExports;
  /** The C heap's arena cap and periodic trim, as torusd has (`malloc_tuning.ts`). */
  #malloc: MallocTuning;

  private constructor(
    node: TorusNode,
    exports: VolumeExports,
    server: NbdServer,
    malloc: MallocTuning,
  ) {
    this.#node = node;
    this.#exports = exports;
    this.server = server;
    this.#malloc = malloc;
  }

  /**
   * Opens the data directory and listens.
   *
   * @throws {NotInitializedError} when the directory is not initialized.
   * @throws {TorusError} when the block store is in use by another process.
   */
  static async start(options: NbdServeOptions): Promise<NbdServe> {
    const { hostname, port } = parseHostPort(options.address, NBD_PORT_DEFAULT);
    const node: TorusNode = options.cluster
      ? await ClusterNode.open({ ...options.cluster, clock: options.clock, logger: options.logger })
      : await LocalNode.open({ dataDir: options.dataDir, clock: options.clock });
    try {
      const context = await node.volumes();
      if (node instanceof LocalNode) {
        context.reclaimSpace = async () => {
          await collectGarbage(context);
        };
      }
      const exports = new VolumeExports({
        context,
        lease: async () => (await node.lease()).lease,
        readOnly: options.readOnly,
      });
      const server = NbdServer.listen({
        provider: exports,
        hostname,
        port,
        logger: (entry) => options.logger.log(entry.level, formatNbdLogEntry(entry)),
      });
      options.logger.log("info", `NBD on ${hostname}:${server.port}`);
      return new NbdServe(node, exports, server, MallocTuning.start(options.clock));
    } catch (error) {
      await node.close().catch(() => {});
      throw error;
    }
  }

  /** Stops listening, lets requests finish, syncs and closes every volume. */
  async close(): Promise<void> {
    await this.server.close();
    await this.#exports.close();
    await this.#node.close();
    await this.#malloc.stop();
  }
}
