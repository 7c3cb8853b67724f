/**
 * The operations behind `torusctl` and the cluster flags shared by the
 * binaries. They return data; printing is the command's job.
 *
 * - `cluster_flags.ts`: the data-directory flags, and whether a command runs
 *   against a cluster (etcd) or a local data directory.
 * - `volume_ops.ts`: volumes, snapshots and `init`.
 * - `cluster_ops.ts`: peers and the ring, each change a compare-and-swap.
 * - `dump_load.ts`: copy a volume to a file and a file into a new volume.
 *
 * @module
 */
export {
  ClusterAdmin,
  clusterNodeOptions,
  clusterRequested,
  DATA_FLAGS,
  dataOptions,
  etcdLocation,
  openEtcd,
  requireCluster,
} from "./cluster_flags.ts";
export {
  addPeers,
  getRing,
  listPeers,
  manualChange,
  type PeerListing,
  type PeerRow,
  removePeers,
  REPLICATION_MAX,
  RING_CHANGE_ATTEMPTS_MAX,
  setReplication,
} from "./cluster_ops.ts";
export { COPY_CHUNK_BYTES, dumpVolume, loadVolume, type Progress } from "./dump_load.ts";
export {
  createSnapshot,
  createVolume,
  deleteSnapshot,
  deleteVolume,
  initialize,
  type InitOptions,
  type InitPlan,
  listSnapshots,
  listVolumes,
  parseSnapshotName,
  planInitialize,
  restoreVolumeSnapshot,
  type VolumeRow,
} from "./volume_ops.ts";
