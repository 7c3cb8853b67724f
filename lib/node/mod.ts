/**
 * Nodes: "a Torus" as the commands see it ({@linkcode TorusNode}).
 *
 * - `local_node.ts`: {@linkcode LocalNode}, one data directory with the
 *   embedded metadata store and the file block store.
 * - `cluster_node.ts`: {@linkcode ClusterNode}, a member or client of a
 *   cluster coordinated by etcd.
 * - `data_dir.ts`: the layout of a data directory.
 * - `lease_keeper.ts`: {@linkcode LeaseKeeper}, which keeps a lease alive.
 *
 * @module
 */
export {
  AUTO_JOIN_ATTEMPTS_MAX,
  CLUSTER_REPLICATION_DEFAULT,
  CLUSTER_STORE_SIZE_BYTES_DEFAULT,
  type ClusterInitOptions,
  ClusterNode,
  type ClusterNodeOptions,
  type ClusterNodeStatus,
  HEARTBEAT_INTERVAL_MS,
  initializeCluster,
  PROTOCOL_VERSION,
  readClusterGlobal,
  REBALANCE_BUSY_PAUSE_MS,
  REBALANCE_IDLE_PAUSE_MS,
  WRITE_CACHE_BYTES_DEFAULT,
} from "./cluster_node.ts";
export {
  dataDirExists,
  type DataDirPaths,
  dataDirPaths,
  ensureDataDir,
  readOrCreateUuid,
} from "./data_dir.ts";
export { LeaseKeeper } from "./lease_keeper.ts";
export { initialRingBytes, LocalNode, type LocalNodeOptions } from "./local_node.ts";
export type { InitializeOptions, TorusNode } from "./torus_node.ts";
