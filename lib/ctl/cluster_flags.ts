/**
 * The flags of cluster mode shared by torusd, torusctl and torusblk, and
 * what they open. A command runs against a cluster when it is given an etcd
 * flag (`--etcd`, `--profile` or `--config`); otherwise against the embedded
 * metadata of `--data-dir`.
 *
 * @module
 */
import type { VolumeContext } from "../block/block_volume.ts";
import type { FlagSpec, Invocation } from "../cli/command.ts";
import type { Clock } from "../clock.ts";
import { ETCD_FLAGS, etcdOptionsFromFlags } from "../config/etcd_flags.ts";
import {
  READ_LEVELS,
  type ReadLevel,
  WRITE_LEVELS,
  type WriteLevel,
} from "../distributor/distributor.ts";
import type { Logger } from "../log.ts";
import { EtcdMetadata } from "../metadata/etcd_metadata.ts";
import type { GlobalMetadata, MetadataService } from "../metadata/metadata_service.ts";
import { LeaseKeeper } from "../node/lease_keeper.ts";
import {
  ClusterNode,
  type ClusterNodeOptions,
  initializeCluster,
  readClusterGlobal,
} from "../node/cluster_node.ts";
import type { InitializeOptions, TorusNode } from "../node/torus_node.ts";
import { TcpTransport } from "../peer/tcp_transport.ts";
import { RingType } from "../ring/ring.ts";
import { parseSize } from "../size.ts";

export { ETCD_FLAGS };

/** The data-path flags of a cluster client or node (the original's shared flags). */
export const DATA_FLAGS: Record<string, FlagSpec> = {
  "read-level": {
    type: "string",
    default: "block",
    description: `how reads pick replicas: ${READ_LEVELS.join(", ")}`,
    valueName: "LEVEL",
  },
  "write-level": {
    type: "string",
    default: "all",
    description: `how many replicas a write waits for: ${WRITE_LEVELS.join(", ")}`,
    valueName: "LEVEL",
  },
  "read-cache-size": {
    type: "string",
    default: "50MiB",
    description: "memory for blocks read from peers (0 disables)",
    valueName: "SIZE",
  },
  "write-cache-size": {
    type: "string",
    default: "128MiB",
    description: "a client's local store, used by --write-level local",
    valueName: "SIZE",
  },
};

/** True when the flags ask for a cluster (an etcd flag is given). */
export function clusterRequested(flags: Invocation["flags"]): boolean {
  return ["etcd", "profile", "config"].some((name) => {
    const value = flags[name];
    return typeof value === "string" && value !== "";
  });
}

/** Opens the etcd metadata the flags name, as `uuid`. */
export async function openEtcd(
  flags: Invocation["flags"],
  options: { clock: Clock; uuid?: string; logger?: Logger },
): Promise<EtcdMetadata> {
  return await EtcdMetadata.open(await etcdOptionsFromFlags(flags, options));
}

/** How messages name the cluster: `etcd 127.0.0.1:2379`. */
export function etcdLocation(metadata: EtcdMetadata): string {
  return `etcd ${metadata.endpoints.join(",")}`;
}

/** The flag a message should suggest to reach the same etcd. */
function etcdAdvice(metadata: EtcdMetadata): string {
  return `torusctl init --etcd ${metadata.endpoints.join(",")}`;
}

/** The read and write levels and cache sizes from {@linkcode DATA_FLAGS}. */
export function dataOptions(flags: Invocation["flags"]): Pick<
  ClusterNodeOptions,
  "readLevel" | "writeLevel" | "readCacheBytes" | "writeCacheBytes"
> {
  const read = String(flags["read-level"] ?? "block");
  const write = String(flags["write-level"] ?? "all");
  if (!READ_LEVELS.includes(read as ReadLevel)) {
    throw new RangeError(`Cannot use --read-level ${read}: expected ${READ_LEVELS.join(", ")}`);
  }
  if (!WRITE_LEVELS.includes(write as WriteLevel)) {
    throw new RangeError(`Cannot use --write-level ${write}: expected ${WRITE_LEVELS.join(", ")}`);
  }
  return {
    readLevel: read as ReadLevel,
    writeLevel: write as WriteLevel,
    readCacheBytes: parseSize(String(flags["read-cache-size"] ?? "50MiB")),
    writeCacheBytes: parseSize(String(flags["write-cache-size"] ?? "128MiB")),
  };
}

/**
 * What a {@linkcode ClusterNode} needs from the flags: etcd (opened per
 * uuid), TCP transport, levels. The caller adds the data directory, the peer
 * address and auto-join for a storage node.
 */
export async function clusterNodeOptions(
  flags: Invocation["flags"],
  options: { clock: Clock; logger: Logger },
): Promise<ClusterNodeOptions> {
  const data = dataOptions(flags);
  const etcd = await etcdOptionsFromFlags(flags, { clock: options.clock, logger: options.logger });
  const endpoints = etcd.endpoints.join(",");
  return {
    ...data,
    openMetadata: (uuid) => EtcdMetadata.open({ ...etcd, uuid }),
    location: `etcd ${endpoints}`,
    initAdvice: `torusctl init --etcd ${endpoints}`,
    clock: options.clock,
    logger: options.logger,
    transport: (blockSizeBytes, uuid) =>
      new TcpTransport({
        blockSizeBytes,
        nodeUuid: uuid,
        clock: options.clock,
        logger: options.logger,
      }),
  };
}

/**
 * A cluster as torusctl sees it: the etcd metadata for metadata commands,
 * and a client {@linkcode ClusterNode} opened on first use for commands that
 * move data (`block dump`, `block load`).
 */
export class ClusterAdmin implements TorusNode {
  readonly metadata: EtcdMetadata;
  readonly location: string;
  readonly clock: Clock;
  #flags: Invocation["flags"];
  #logger: Logger;
  #client: ClusterNode | null = null;
  #lease: LeaseKeeper | null = null;

  private constructor(
    metadata: EtcdMetadata,
    flags: Invocation["flags"],
    clock: Clock,
    logger: Logger,
  ) {
    this.metadata = metadata;
    this.location = etcdLocation(metadata);
    this.clock = clock;
    this.#flags = flags;
    this.#logger = logger;
  }

  /** Connects to the etcd the flags name. */
  static async open(
    flags: Invocation["flags"],
    options: { clock: Clock; logger: Logger },
  ): Promise<ClusterAdmin> {
    const metadata = await openEtcd(flags, options);
    return new ClusterAdmin(metadata, flags, options.clock, options.logger);
  }

  async globalMetadata(): Promise<GlobalMetadata> {
    return await readClusterGlobal(this.metadata, {
      location: this.location,
      initAdvice: etcdAdvice(this.metadata),
    });
  }

  /** Formats the cluster; `noRing` starts it with an empty ring instead of ketama. */
  async initialize(global: GlobalMetadata, options: InitializeOptions = {}): Promise<void> {
    await initializeCluster(this.metadata, {
      global,
      ringType: options.noRing ? RingType.empty : RingType.ketama,
    });
  }

  async volumes(): Promise<VolumeContext> {
    if (this.#client === null) {
      this.#client = await ClusterNode.open(
        await clusterNodeOptions(this.#flags, { clock: this.clock, logger: this.#logger }),
      );
    }
    return await this.#client.volumes();
  }

  async lease(): Promise<LeaseKeeper> {
    if (this.#client !== null) return await this.#client.lease();
    this.#lease ??= await LeaseKeeper.start(this.metadata, this.clock);
    return this.#lease;
  }

  async close(): Promise<void> {
    const errors: unknown[] = [];
    await this.#client?.close().catch((error) => errors.push(error));
    await this.#lease?.close().catch((error) => errors.push(error));
    await this.metadata.close().catch((error) => errors.push(error));
    if (errors.length > 0) throw errors[0];
  }
}

/**
 * The metadata service of a {@linkcode TorusNode}, for cluster-only
 * commands: refused for a data directory, and for a cluster that was never
 * initialized (with what to run).
 */
export async function requireCluster(node: TorusNode): Promise<MetadataService> {
  if (!(node instanceof ClusterAdmin)) {
    throw new TypeError(
      `This command needs a cluster: give --etcd HOST:PORT (or --profile NAME); ${node.location} is a single-machine data directory`,
    );
  }
  await node.globalMetadata();
  return node.metadata;
}
