/**
 * The MetadataService contract: everything Torus coordinates outside the
 * blocks themselves. Implementations: `memory` (tests), `sqlite` (the
 * embedded store of a single machine) and, in cluster mode, `etcd`.
 *
 * @module
 */
import type { INodeRef } from "../core/block_ref.ts";

/** Cluster-wide settings fixed at `init`. */
export interface GlobalMetadata {
  /** Size of every block, in bytes. */
  blockSizeBytes: number;
  /** The blockset spec new volumes use, for example `crc,base`. */
  defaultBlockSpec: string;
}

/** A volume's registry entry. */
export interface VolumeInfo {
  name: string;
  /** 40-bit volume id; the first volume gets 1. */
  id: number;
  /** Only `block` exists today. */
  type: "block";
  /** Size of the volume, in bytes. */
  sizeBytes: number;
}

/** A saved INode of a volume. */
export interface SnapshotInfo {
  name: string;
  /** When it was taken, in ms since the epoch (from the injected clock). */
  createdMs: number;
  inode: INodeRef;
}

/** A lease: a time-bounded claim that a process is alive. */
export interface Lease {
  id: number;
  ttlMs: number;
}

/**
 * Proof of holding a volume's write lock. `fence` is unique per acquisition
 * and grows monotonically: a commit carrying an old fence is refused.
 */
export interface LockToken {
  volumeId: number;
  owner: string;
  leaseId: number;
  fence: number;
}

/** Lock state for display. */
export type LockStatus = "free" | "in-use" | "unknown";

/** A peer's registration, as heartbeated under its lease. */
export interface PeerRecord {
  uuid: string;
  /** Where peers reach it (`tdp://host:port`), empty for clients. */
  address: string;
  lastSeenMs: number;
  totalBlocks: number;
  usedBlocks: number;
  rebalancing: boolean;
  lastRebalanceFinishMs: number;
  lastRebalanceBlocks: number;
  protocolVersion: number;
}

/** The placement ring, as stored: a marshalled `models.Ring` and its version. */
export interface RingRecord {
  version: number;
  /**
   * `models.Ring` bytes, whose `version` field is {@linkcode RingRecord.version}.
   * The etcd implementation stores only the bytes (as the original did) and
   * reads the version back from them, so it refuses bytes that are not a ring
   * or that carry another version.
   */
  bytes: Uint8Array;
}

/**
 * The metadata service. Every method may throw the errors named on it, and
 * any method may throw an I/O error of the backing store; callers that delete
 * data on the strength of metadata (GC) must treat any error as "keep".
 */
export interface MetadataService {
  /** `memory`, `sqlite` or `etcd`. */
  readonly kind: string;
  /** This process's identity (a UUID kept in the data directory when there is one). */
  readonly uuid: string;

  /** @throws {NotInitializedError} before `initialize`. */
  globalMetadata(): Promise<GlobalMetadata>;
  /**
   * Formats the store: global metadata and the first ring.
   * @throws {AlreadyExistsError} when already initialized.
   */
  initialize(metadata: GlobalMetadata, ring: RingRecord): Promise<void>;

  /**
   * Creates a volume with INode counter 1 and current INode (id, 1).
   * @throws {AlreadyExistsError} when the name is taken.
   */
  createVolume(name: string, sizeBytes: number): Promise<VolumeInfo>;
  /** @throws {VolumeNotFoundError} */
  getVolume(name: string): Promise<VolumeInfo>;
  /** Every volume, by name. */
  listVolumes(): Promise<VolumeInfo[]>;
  /**
   * The largest volume id ever handed out (0 before the first volume). Ids are
   * never reused, so a volume id at or below it that `listVolumes` does not
   * return belongs to a deleted volume.
   */
  volumeIdHighwater(): Promise<number>;
  /**
   * Grows a volume to `sizeBytes` and returns it; its current size is a
   * no-op. Only the volume record changes: INodes keep the size they were
   * written with, and a volume's head opened later reads as zeros past its
   * INode's size until written (snapshots keep their size). Allowed while
   * the volume is locked: a writer sees the new size when it next opens it.
   *
   * @throws {VolumeNotFoundError}
   * @throws {RangeError} on a size that is not an integer in [1, `VOLUME_SIZE_BYTES_MAX`],
   *   or smaller than the volume's (shrinking would cut off data).
   */
  resizeVolume(name: string, sizeBytes: number): Promise<VolumeInfo>;
  /**
   * Deletes a volume and everything under it (snapshots, counters, lock).
   * @throws {VolumeNotFoundError}
   * @throws {VolumeInUseError} when its lock is held.
   */
  deleteVolume(name: string): Promise<void>;

  /** Atomically increments and returns the volume's INode counter. */
  nextINode(volumeId: number): Promise<number>;
  /** The last INode number {@linkcode MetadataService.nextINode} handed out (1 for a new volume). */
  inodeCounter(volumeId: number): Promise<number>;
  /** The volume's current INode. */
  currentINode(volumeId: number): Promise<INodeRef>;
  /**
   * Commits `inode` as the volume's current INode, fenced: in one transaction
   * it checks that `lock` is still the volume's lock (same owner, same fence,
   * lease alive).
   * @throws {FencedError} when it is not.
   */
  commitINode(lock: LockToken, inode: INodeRef): Promise<void>;

  /** Grants a lease. */
  grantLease(ttlMs: number): Promise<Lease>;
  /** Renews a lease. @throws {FencedError} when it already expired. */
  renewLease(lease: Lease): Promise<void>;
  /** Revokes a lease and releases the locks bound to it. */
  revokeLease(lease: Lease): Promise<void>;
  /**
   * Takes the volume's write lock, bound to `lease`.
   * @throws {VolumeInUseError} when another live lease holds it.
   */
  lockVolume(volumeId: number, lease: Lease): Promise<LockToken>;
  /** Releases the lock if `lock` still holds it. */
  unlockVolume(lock: LockToken): Promise<void>;
  /** The lock's state. */
  lockStatus(volumeId: number): Promise<LockStatus>;

  /**
   * Saves the current INode under `name`.
   * @throws {AlreadyExistsError}
   */
  saveSnapshot(volumeId: number, name: string): Promise<SnapshotInfo>;
  /** Snapshots of a volume, by name. */
  listSnapshots(volumeId: number): Promise<SnapshotInfo[]>;
  /** @throws {SnapshotNotFoundError} */
  deleteSnapshot(volumeId: number, name: string): Promise<void>;

  /** Registers or refreshes a peer, bound to `lease`. */
  registerPeer(lease: Lease, peer: PeerRecord): Promise<void>;
  /** Peers whose leases are alive. */
  listPeers(): Promise<PeerRecord[]>;

  /** @throws {NotInitializedError} */
  getRing(): Promise<RingRecord>;
  /**
   * Replaces the ring; `ring.version` must be the current version plus one.
   * @throws {ConflictError} otherwise.
   */
  setRing(ring: RingRecord): Promise<void>;
  /** Calls `callback` with each new ring; returns a function that stops it. */
  watchRing(callback: (ring: RingRecord) => void): () => void;

  /** Releases connections and timers. */
  close(): Promise<void>;
}
