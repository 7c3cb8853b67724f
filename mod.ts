/**
 * Torus on Deno: a distributed block store. A volume is split into
 * fixed-size blocks, written append-only under INodes, checksummed, and
 * attached as a block device over NBD.
 *
 * This module is the public library API, as an explicit list.
 *
 * @example Write and read a volume in memory
 * ```ts
 * import {
 *   createBlockVolume, INodeStore, ManualClock, MemoryBlockStore, MemoryMetadata, openBlockFile,
 * } from "./mod.ts";
 * const clock = new ManualClock(0);
 * const metadata = new MemoryMetadata({ clock });
 * await metadata.initialize({ blockSizeBytes: 4096, defaultBlockSpec: "crc,base" }, {
 *   version: 1,
 *   bytes: new Uint8Array(),
 * });
 * const store = new MemoryBlockStore({ blockSizeBytes: 4096, numBlocks: 64 });
 * const context = { metadata, store, inodes: new INodeStore(store) };
 * await createBlockVolume(metadata, "vol1", 1 << 20);
 * const file = await openBlockFile(context, "vol1", { lease: await metadata.grantLease(30_000) });
 * await file.writeAt(new TextEncoder().encode("hello"), 0);
 * await file.sync();
 * await file.close();
 * ```
 *
 * @module
 */

// Addresses and checksums.
export { BlockRef, BlockType, INodeRef } from "./lib/core/block_ref.ts";
export { crc32 } from "./lib/core/crc32.ts";

// Time, randomness, sizes, errors.
export { type Clock, ManualClock, SystemClock } from "./lib/clock.ts";
export { Prng } from "./lib/prng.ts";
export { formatSize, parseSize, parseSizeSpec, type SizeSpec } from "./lib/size.ts";
export {
  AlreadyExistsError,
  BlockCorruptError,
  BlockNotFoundError,
  ClosedError,
  ConflictError,
  FencedError,
  MetadataUnavailableError,
  NoPeersError,
  NotInitializedError,
  OutOfSpaceError,
  PeerNotFoundError,
  PeerUnavailableError,
  ReadOnlyError,
  SnapshotNotFoundError,
  TorusError,
  VolumeInUseError,
  VolumeNotFoundError,
} from "./lib/errors.ts";

// Block stores.
export type { BlockRange, BlockRead, BlockStore } from "./lib/storage/block_store.ts";
export {
  MemoryBlockStore,
  type MemoryBlockStoreOptions,
} from "./lib/storage/memory_block_store.ts";
export { FileBlockStore, type FileBlockStoreOptions } from "./lib/storage/file_block_store.ts";

// Blocksets and INodes.
export { Blockset, formatBlockSpec, type LayerSpec, parseBlockSpec } from "./lib/blockset/mod.ts";
export { type INodeRecord, INodeStore } from "./lib/inode/inode_store.ts";

// Metadata.
export type {
  GlobalMetadata,
  Lease,
  LockStatus,
  LockToken,
  MetadataService,
  PeerRecord,
  RingRecord,
  SnapshotInfo,
  VolumeInfo,
} from "./lib/metadata/metadata_service.ts";
export { MemoryMetadata, MemoryMetadataStore } from "./lib/metadata/memory_metadata.ts";
export { SqliteMetadata, type SqliteMetadataOptions } from "./lib/metadata/sqlite_metadata.ts";
export {
  EtcdMetadata,
  type EtcdMetadataOptions,
  type EtcdTlsFiles,
  wipeEtcd,
  type WipeEtcdOptions,
} from "./lib/metadata/etcd_metadata.ts";
export { retryingMetadata } from "./lib/metadata/retrying_metadata.ts";

// Placement rings.
export {
  createRing,
  EmptyRing,
  isMutableRing,
  KetamaRing,
  ModRing,
  type MutableRing,
  parseRingType,
  type PeerPermutation,
  type Ring,
  type RingOptions,
  type RingPeer,
  type RingSimOptions,
  type RingSimResult,
  RingType,
  ringTypeName,
  simulateRingChange,
  SingleRing,
  UnionRing,
  unmarshalRing,
} from "./lib/ring/mod.ts";

// Peers and the distributor.
export {
  parsePeerAddress,
  PEER_PORT_DEFAULT,
  type PeerCallOptions,
  type PeerClient,
  type PeerListener,
  type PeerListenerStats,
  TcpTransport,
  type TcpTransportOptions,
  type Transport,
} from "./lib/peer/mod.ts";
export { MemoryTransport, type MemoryTransportOptions } from "./lib/peer/memory_transport.ts";
export {
  Distributor,
  type DistributorOptions,
  type DistributorStats,
  READ_LEVELS,
  type ReadLevel,
  WRITE_LEVELS,
  type WriteLevel,
} from "./lib/distributor/distributor.ts";
export { Rebalancer, type RebalancerOptions } from "./lib/distributor/rebalancer.ts";

// Files and block volumes.
export { File, type FileOptions, type ReclaimReason, type Whence } from "./lib/file/file.ts";
export {
  createBlockVolume,
  openBlockFile,
  openSnapshot,
  type OpenVolumeOptions,
  restoreSnapshot,
  type VolumeContext,
} from "./lib/block/block_volume.ts";
export { collectGarbage, type GcResult } from "./lib/block/gc.ts";

// A data directory on one machine, or a process in a cluster.
export type { TorusNode } from "./lib/node/torus_node.ts";
export { LocalNode, type LocalNodeOptions } from "./lib/node/local_node.ts";
export {
  ClusterNode,
  type ClusterNodeOptions,
  type ClusterNodeStatus,
  initializeCluster,
} from "./lib/node/cluster_node.ts";
export { VERSION } from "./lib/version.ts";
