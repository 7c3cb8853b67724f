/**
 * An in-memory {@linkcode MetadataService}, for tests and simulations. Several
 * {@linkcode MemoryMetadata} clients may share one {@linkcode MemoryMetadataStore},
 * as the nodes of the original's temp metadata server did; each client has its
 * own uuid and clock.
 *
 * Every operation runs synchronously against the shared state, so each one is
 * atomic with respect to every other client. Leases expire by the client's
 * clock: a lease is alive while `expiresAtMs > clock.nowMs()`.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { INodeRef } from "../core/block_ref.ts";
import {
  AlreadyExistsError,
  ClosedError,
  ConflictError,
  FencedError,
  NotInitializedError,
  SnapshotNotFoundError,
  VolumeInUseError,
  VolumeNotFoundError,
} from "../errors.ts";
import {
  checkGlobalMetadata,
  checkName,
  checkNewVolumeId,
  checkNotShrinking,
  checkPeer,
  checkRing,
  checkTtlMs,
  checkVolumeId,
  checkVolumeSizeBytes,
  closedMessage,
  compareStrings,
  copyPeer,
} from "./_common.ts";
import type {
  GlobalMetadata,
  Lease,
  LockStatus,
  LockToken,
  MetadataService,
  PeerRecord,
  RingRecord,
  SnapshotInfo,
  VolumeInfo,
} from "./metadata_service.ts";

interface LockState {
  owner: string;
  leaseId: number;
  fence: number;
}

interface VolumeState {
  info: VolumeInfo;
  /** Last INode number handed out; 1 at creation. */
  inodeCounter: number;
  /** INode number of the current INode. */
  currentINode: number;
  lock: LockState | null;
  /** Last fence handed out for this volume's lock; never reset. */
  fenceCounter: number;
  snapshots: Map<string, SnapshotInfo>;
}

interface LeaseState {
  ttlMs: number;
  expiresAtMs: number;
}

interface RingWatcher {
  active: boolean;
  callback: (ring: RingRecord) => void;
}

interface StoreState {
  global: GlobalMetadata | null;
  ring: RingRecord | null;
  /** Last volume id minted; ids are never reused. */
  volumeIdCounter: number;
  volumeIdsByName: Map<string, number>;
  volumes: Map<number, VolumeState>;
  /** Last lease id granted; ids are never reused. */
  leaseIdCounter: number;
  leases: Map<number, LeaseState>;
  peers: Map<string, { leaseId: number; record: PeerRecord }>;
  ringWatchers: Set<RingWatcher>;
}

/** The state behind each store, reachable only from this module. */
const storeStates = new WeakMap<MemoryMetadataStore, StoreState>();

/**
 * The state several {@linkcode MemoryMetadata} clients share: pass the same
 * store to each of them. Opaque outside this module.
 */
export class MemoryMetadataStore {
  constructor() {
    storeStates.set(this, {
      global: null,
      ring: null,
      volumeIdCounter: 0,
      volumeIdsByName: new Map(),
      volumes: new Map(),
      leaseIdCounter: 0,
      leases: new Map(),
      peers: new Map(),
      ringWatchers: new Set(),
    });
  }
}

/** Options of {@linkcode MemoryMetadata}. */
export interface MemoryMetadataOptions {
  /** Time source of lease expiry and snapshot times. */
  clock: Clock;
  /**
   * This client's identity.
   * @default {crypto.randomUUID()}
   */
  uuid?: string;
  /**
   * The state to share with other clients.
   * @default {a new, private store}
   */
  store?: MemoryMetadataStore;
}

function copyRing(ring: RingRecord): RingRecord {
  return { version: ring.version, bytes: ring.bytes.slice() };
}

/** True when the stored lock is the acquisition `token` proves. */
function sameLock(held: LockState, token: LockToken): boolean {
  return held.owner === token.owner && held.fence === token.fence &&
    held.leaseId === token.leaseId;
}

function copySnapshot(snapshot: SnapshotInfo): SnapshotInfo {
  return { name: snapshot.name, createdMs: snapshot.createdMs, inode: snapshot.inode };
}

/**
 * A {@linkcode MetadataService} held in memory.
 *
 * @example Usage
 * ```ts
 * import { ManualClock } from "../clock.ts";
 * import { MemoryMetadata, MemoryMetadataStore } from "./memory_metadata.ts";
 * const clock = new ManualClock(0);
 * const store = new MemoryMetadataStore();
 * const a = new MemoryMetadata({ clock, store, uuid: "a" });
 * const b = new MemoryMetadata({ clock, store, uuid: "b" });
 * await a.initialize({ blockSizeBytes: 4096, defaultBlockSpec: "crc,base" }, {
 *   version: 1,
 *   bytes: new Uint8Array(),
 * });
 * const volume = await a.createVolume("vol1", 1 << 20);
 * if ((await b.getVolume("vol1")).id !== volume.id) throw new Error("not shared");
 * ```
 */
export class MemoryMetadata implements MetadataService {
  /** Always `memory`. */
  readonly kind = "memory";
  /** This client's identity. */
  readonly uuid: string;
  #clock: Clock;
  #state: StoreState;
  #watchers = new Set<RingWatcher>();
  #closed = false;

  constructor(options: MemoryMetadataOptions) {
    this.#clock = options.clock;
    this.uuid = options.uuid ?? crypto.randomUUID();
    const store = options.store ?? new MemoryMetadataStore();
    const state = storeStates.get(store);
    if (state === undefined) {
      throw new TypeError("Cannot create MemoryMetadata: 'store' is not a MemoryMetadataStore");
    }
    this.#state = state;
  }

  /**
   * Runs `body` against the shared state and turns what it returns or throws
   * into a promise, so that every failure, argument checks included, is a
   * rejection.
   */
  #run<T>(operation: string, body: (state: StoreState) => T): Promise<T> {
    try {
      if (this.#closed) throw new ClosedError(closedMessage(this, operation));
      return Promise.resolve(body(this.#state));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #leaseAlive(state: StoreState, leaseId: number): boolean {
    const lease = state.leases.get(leaseId);
    return lease !== undefined && lease.expiresAtMs > this.#clock.nowMs();
  }

  /** The lock of `volume` if a live lease holds it, else null. */
  #liveLock(state: StoreState, volume: VolumeState): LockState | null {
    if (volume.lock === null || !this.#leaseAlive(state, volume.lock.leaseId)) return null;
    return volume.lock;
  }

  #volume(state: StoreState, volumeId: number, operation: string): VolumeState {
    checkVolumeId(volumeId);
    const volume = state.volumes.get(volumeId);
    if (volume === undefined) {
      throw new VolumeNotFoundError(`Cannot ${operation}: volume id ${volumeId} does not exist`);
    }
    return volume;
  }

  #volumeByName(state: StoreState, name: string, operation: string): VolumeState {
    const id = state.volumeIdsByName.get(name);
    const volume = id === undefined ? undefined : state.volumes.get(id);
    if (volume === undefined) {
      throw new VolumeNotFoundError(`Cannot ${operation}: it does not exist`);
    }
    return volume;
  }

  /** @throws {NotInitializedError} before {@linkcode MemoryMetadata.initialize}. */
  globalMetadata(): Promise<GlobalMetadata> {
    return this.#run("read global metadata", (state) => {
      if (state.global === null) {
        throw new NotInitializedError(
          "Cannot read global metadata: the metadata is not initialized",
        );
      }
      return { ...state.global };
    });
  }

  /** @throws {AlreadyExistsError} when already initialized. */
  initialize(metadata: GlobalMetadata, ring: RingRecord): Promise<void> {
    return this.#run("initialize metadata", (state) => {
      checkGlobalMetadata(metadata);
      checkRing(ring);
      if (state.global !== null) {
        throw new AlreadyExistsError("Cannot initialize metadata: it is already initialized");
      }
      state.global = {
        blockSizeBytes: metadata.blockSizeBytes,
        defaultBlockSpec: metadata.defaultBlockSpec,
      };
      state.ring = copyRing(ring);
    });
  }

  /**
   * @throws {NotInitializedError} before `initialize`.
   * @throws {AlreadyExistsError} when the name is taken.
   * @throws {RangeError} on a bad name or size.
   */
  createVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    return this.#run(`create volume "${name}"`, (state) => {
      checkName("volume", name);
      checkVolumeSizeBytes(name, sizeBytes);
      if (state.global === null) {
        throw new NotInitializedError(
          `Cannot create volume "${name}": the metadata is not initialized`,
        );
      }
      if (state.volumeIdsByName.has(name)) {
        throw new AlreadyExistsError(`Cannot create volume "${name}": it already exists`);
      }
      const id = state.volumeIdCounter + 1;
      checkNewVolumeId(name, id);
      state.volumeIdCounter = id;
      const info: VolumeInfo = { name, id, type: "block", sizeBytes };
      state.volumeIdsByName.set(name, id);
      state.volumes.set(id, {
        info,
        inodeCounter: 1,
        currentINode: 1,
        lock: null,
        fenceCounter: 0,
        snapshots: new Map(),
      });
      return { ...info };
    });
  }

  /** @throws {VolumeNotFoundError} */
  getVolume(name: string): Promise<VolumeInfo> {
    return this.#run(`get volume "${name}"`, (state) => {
      return { ...this.#volumeByName(state, name, `get volume "${name}"`).info };
    });
  }

  /** Every volume, by name. */
  listVolumes(): Promise<VolumeInfo[]> {
    return this.#run("list volumes", (state) => {
      const volumes = [...state.volumes.values()].map((volume) => ({ ...volume.info }));
      volumes.sort((left, right) => compareStrings(left.name, right.name));
      return volumes;
    });
  }

  /** The largest volume id ever handed out. */
  volumeIdHighwater(): Promise<number> {
    return this.#run("read the volume id highwater", (state) => state.volumeIdCounter);
  }

  /**
   * Grows the volume's registry entry to `sizeBytes`; its current size is a
   * no-op. Its INodes, lock and snapshots are untouched, and a held lock
   * does not prevent it.
   *
   * @throws {VolumeNotFoundError}
   * @throws {RangeError} on a bad size, or one smaller than the volume's.
   */
  resizeVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    return this.#run(`resize volume "${name}"`, (state) => {
      checkVolumeSizeBytes(name, sizeBytes, "resize");
      const volume = this.#volumeByName(state, name, `resize volume "${name}"`);
      checkNotShrinking(volume.info, sizeBytes);
      volume.info = { ...volume.info, sizeBytes };
      return { ...volume.info };
    });
  }

  /**
   * Deletes the volume, its counters, lock and snapshots. Its id is never
   * reused.
   *
   * @throws {VolumeNotFoundError}
   * @throws {VolumeInUseError} when a live lease holds its lock.
   */
  deleteVolume(name: string): Promise<void> {
    return this.#run(`delete volume "${name}"`, (state) => {
      const volume = this.#volumeByName(state, name, `delete volume "${name}"`);
      const lock = this.#liveLock(state, volume);
      if (lock !== null) {
        throw new VolumeInUseError(`Cannot delete volume "${name}": it is in use by ${lock.owner}`);
      }
      state.volumeIdsByName.delete(name);
      state.volumes.delete(volume.info.id);
    });
  }

  /** @throws {VolumeNotFoundError} */
  nextINode(volumeId: number): Promise<number> {
    return this.#run(`allocate an INode of volume id ${volumeId}`, (state) => {
      const volume = this.#volume(state, volumeId, "allocate an INode");
      volume.inodeCounter += 1;
      return volume.inodeCounter;
    });
  }

  /** @throws {VolumeNotFoundError} */
  inodeCounter(volumeId: number): Promise<number> {
    return this.#run(`read the INode counter of volume id ${volumeId}`, (state) => {
      return this.#volume(state, volumeId, "read the INode counter").inodeCounter;
    });
  }

  /** @throws {VolumeNotFoundError} */
  currentINode(volumeId: number): Promise<INodeRef> {
    return this.#run(`read the current INode of volume id ${volumeId}`, (state) => {
      const volume = this.#volume(state, volumeId, "read the current INode");
      return new INodeRef(volumeId, volume.currentINode);
    });
  }

  /**
   * @throws {FencedError} when `lock` no longer holds the volume's lock: it
   * was released or taken over, or its lease expired (even if nobody else
   * took the lock since).
   * @throws {RangeError} when `inode` belongs to another volume.
   */
  commitINode(lock: LockToken, inode: INodeRef): Promise<void> {
    return this.#run(`commit INode ${inode.inode} of volume id ${lock.volumeId}`, (state) => {
      if (inode.volume !== lock.volumeId) {
        throw new RangeError(
          `Cannot commit INode (${inode}) under the lock of volume id ${lock.volumeId}`,
        );
      }
      const volume = state.volumes.get(lock.volumeId);
      const held = volume === undefined ? null : this.#liveLock(state, volume);
      if (volume === undefined || held === null || !sameLock(held, lock)) {
        throw new FencedError(
          `Cannot commit INode ${inode.inode} of volume id ${lock.volumeId}: ` +
            `lock fence ${lock.fence} of ${lock.owner} no longer holds the volume`,
        );
      }
      volume.currentINode = inode.inode;
    });
  }

  /** @throws {RangeError} on a `ttlMs` that is not a positive integer. */
  grantLease(ttlMs: number): Promise<Lease> {
    return this.#run("grant a lease", (state) => {
      checkTtlMs(ttlMs);
      const nowMs = this.#clock.nowMs();
      // An expired lease can never be renewed and holds nothing, so forgetting
      // it (and the peer records bound to it) changes no answer.
      for (const [id, lease] of state.leases) {
        if (lease.expiresAtMs <= nowMs) state.leases.delete(id);
      }
      for (const [uuid, peer] of state.peers) {
        if (!state.leases.has(peer.leaseId)) state.peers.delete(uuid);
      }
      const id = ++state.leaseIdCounter;
      state.leases.set(id, { ttlMs, expiresAtMs: nowMs + ttlMs });
      return { id, ttlMs };
    });
  }

  /** @throws {FencedError} when the lease already expired or was revoked. */
  renewLease(lease: Lease): Promise<void> {
    return this.#run(`renew lease ${lease.id}`, (state) => {
      const stored = state.leases.get(lease.id);
      const nowMs = this.#clock.nowMs();
      if (stored === undefined || stored.expiresAtMs <= nowMs) {
        throw new FencedError(`Cannot renew lease ${lease.id}: it expired or was revoked`);
      }
      stored.expiresAtMs = nowMs + stored.ttlMs;
    });
  }

  /** Revokes a lease and releases the locks and peer records bound to it. */
  revokeLease(lease: Lease): Promise<void> {
    return this.#run(`revoke lease ${lease.id}`, (state) => {
      state.leases.delete(lease.id);
      for (const volume of state.volumes.values()) {
        if (volume.lock?.leaseId === lease.id) volume.lock = null;
      }
      for (const [uuid, peer] of state.peers) {
        if (peer.leaseId === lease.id) state.peers.delete(uuid);
      }
    });
  }

  /**
   * @throws {VolumeNotFoundError}
   * @throws {VolumeInUseError} when a live lease holds it (even `lease` itself).
   * @throws {FencedError} when `lease` expired.
   */
  lockVolume(volumeId: number, lease: Lease): Promise<LockToken> {
    return this.#run(`lock volume id ${volumeId}`, (state) => {
      const volume = this.#volume(state, volumeId, "lock volume");
      const name = volume.info.name;
      if (!this.#leaseAlive(state, lease.id)) {
        throw new FencedError(`Cannot lock volume "${name}": lease ${lease.id} expired`);
      }
      const held = this.#liveLock(state, volume);
      if (held !== null) {
        throw new VolumeInUseError(`Cannot lock volume "${name}": it is in use by ${held.owner}`);
      }
      const fence = ++volume.fenceCounter;
      volume.lock = { owner: this.uuid, leaseId: lease.id, fence };
      return { volumeId, owner: this.uuid, leaseId: lease.id, fence };
    });
  }

  /** Releases the lock if `lock` still holds it; does nothing otherwise. */
  unlockVolume(lock: LockToken): Promise<void> {
    return this.#run(`unlock volume id ${lock.volumeId}`, (state) => {
      const volume = state.volumes.get(lock.volumeId);
      if (volume?.lock != null && sameLock(volume.lock, lock)) volume.lock = null;
    });
  }

  /**
   * `in-use` while a live lease holds the lock, else `free`.
   * @throws {VolumeNotFoundError}
   */
  lockStatus(volumeId: number): Promise<LockStatus> {
    return this.#run(`read the lock of volume id ${volumeId}`, (state) => {
      const volume = this.#volume(state, volumeId, "read the lock");
      return this.#liveLock(state, volume) === null ? "free" : "in-use";
    });
  }

  /**
   * Saves the current INode under `name`, timed by the clock.
   *
   * @throws {VolumeNotFoundError}
   * @throws {AlreadyExistsError}
   * @throws {RangeError} on a bad name.
   */
  saveSnapshot(volumeId: number, name: string): Promise<SnapshotInfo> {
    return this.#run(`save snapshot "${name}"`, (state) => {
      checkName("snapshot", name);
      const volume = this.#volume(state, volumeId, `save snapshot "${name}"`);
      if (volume.snapshots.has(name)) {
        throw new AlreadyExistsError(
          `Cannot save snapshot "${name}" of volume "${volume.info.name}": it already exists`,
        );
      }
      const snapshot: SnapshotInfo = {
        name,
        createdMs: this.#clock.nowMs(),
        inode: new INodeRef(volumeId, volume.currentINode),
      };
      volume.snapshots.set(name, snapshot);
      return copySnapshot(snapshot);
    });
  }

  /** @throws {VolumeNotFoundError} */
  listSnapshots(volumeId: number): Promise<SnapshotInfo[]> {
    return this.#run(`list snapshots of volume id ${volumeId}`, (state) => {
      const volume = this.#volume(state, volumeId, "list snapshots");
      const snapshots = [...volume.snapshots.values()].map(copySnapshot);
      snapshots.sort((left, right) => compareStrings(left.name, right.name));
      return snapshots;
    });
  }

  /**
   * @throws {VolumeNotFoundError}
   * @throws {SnapshotNotFoundError}
   */
  deleteSnapshot(volumeId: number, name: string): Promise<void> {
    return this.#run(`delete snapshot "${name}"`, (state) => {
      const volume = this.#volume(state, volumeId, `delete snapshot "${name}"`);
      if (!volume.snapshots.delete(name)) {
        throw new SnapshotNotFoundError(
          `Cannot delete snapshot "${name}" of volume "${volume.info.name}": it does not exist`,
        );
      }
    });
  }

  /**
   * Registers or refreshes `peer` under `lease`, with `lastSeenMs` set to now.
   * @throws {FencedError} when `lease` expired.
   */
  registerPeer(lease: Lease, peer: PeerRecord): Promise<void> {
    return this.#run(`register peer ${peer.uuid}`, (state) => {
      checkPeer(peer);
      if (!this.#leaseAlive(state, lease.id)) {
        throw new FencedError(`Cannot register peer ${peer.uuid}: lease ${lease.id} expired`);
      }
      state.peers.set(peer.uuid, {
        leaseId: lease.id,
        record: copyPeer(peer, this.#clock.nowMs()),
      });
    });
  }

  /** Peers whose leases are alive, by uuid. */
  listPeers(): Promise<PeerRecord[]> {
    return this.#run("list peers", (state) => {
      const peers: PeerRecord[] = [];
      for (const peer of state.peers.values()) {
        if (this.#leaseAlive(state, peer.leaseId)) {
          peers.push(copyPeer(peer.record, peer.record.lastSeenMs));
        }
      }
      peers.sort((left, right) => compareStrings(left.uuid, right.uuid));
      return peers;
    });
  }

  /** @throws {NotInitializedError} */
  getRing(): Promise<RingRecord> {
    return this.#run("read the ring", (state) => {
      if (state.ring === null) {
        throw new NotInitializedError("Cannot read the ring: the metadata is not initialized");
      }
      return copyRing(state.ring);
    });
  }

  /**
   * Replaces the ring and notifies every watcher of every client of the
   * store, each in its own microtask.
   *
   * @throws {NotInitializedError}
   * @throws {ConflictError} when `ring.version` is not the current version plus one.
   */
  setRing(ring: RingRecord): Promise<void> {
    return this.#run(`set ring version ${ring.version}`, (state) => {
      checkRing(ring);
      if (state.ring === null) {
        throw new NotInitializedError(
          `Cannot set ring version ${ring.version}: the metadata is not initialized`,
        );
      }
      if (ring.version !== state.ring.version + 1) {
        throw new ConflictError(
          `Cannot set ring version ${ring.version}: the current version is ` +
            `${state.ring.version}, expected version ${state.ring.version + 1}`,
        );
      }
      const stored = copyRing(ring);
      state.ring = stored;
      for (const watcher of state.ringWatchers) {
        queueMicrotask(() => {
          if (watcher.active) watcher.callback(copyRing(stored));
        });
      }
    });
  }

  /** Calls `callback` with each ring set by any client of the store. */
  watchRing(callback: (ring: RingRecord) => void): () => void {
    if (this.#closed) throw new ClosedError(closedMessage(this, "watch the ring"));
    const watcher: RingWatcher = { active: true, callback };
    this.#watchers.add(watcher);
    this.#state.ringWatchers.add(watcher);
    return () => {
      watcher.active = false;
      this.#watchers.delete(watcher);
      this.#state.ringWatchers.delete(watcher);
    };
  }

  /** Stops this client's watchers; later calls throw {@linkcode ClosedError}. */
  close(): Promise<void> {
    this.#closed = true;
    for (const watcher of this.#watchers) {
      watcher.active = false;
      this.#state.ringWatchers.delete(watcher);
    }
    this.#watchers.clear();
    return Promise.resolve();
  }
}
