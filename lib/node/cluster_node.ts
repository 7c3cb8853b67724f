/**
 * A {@linkcode ClusterNode}: this process as a member (a storage node with a
 * data directory and a peer listener) or a client (no data directory, only
 * dials peers) of a cluster coordinated by a metadata service (etcd).
 *
 * It wires the parts together: the local block store served to peers, the
 * {@linkcode Distributor} that places blocks on the ring, the heartbeat that
 * keeps this process registered under its lease (every
 * {@linkcode HEARTBEAT_INTERVAL_MS}), the ring watch, auto-join, the
 * rebalancer and garbage collection of the local store.
 *
 * @module
 */
import type { VolumeContext } from "../block/block_volume.ts";
import { collectGarbage, type GcMarks, type GcResult, markLiveBlocks } from "../block/gc.ts";
import type { Clock } from "../clock.ts";
import { LEASE_RENEW_INTERVAL_MS } from "../constants.ts";
import {
  Distributor,
  type DistributorStats,
  type ReadLevel,
  type WriteLevel,
} from "../distributor/distributor.ts";
import { Rebalancer, type RebalanceStatus } from "../distributor/rebalancer.ts";
import { AlreadyExistsError, ConflictError, NotInitializedError } from "../errors.ts";
import { INodeStore } from "../inode/inode_store.ts";
import type { Logger } from "../log.ts";
import type {
  GlobalMetadata,
  MetadataService,
  PeerRecord,
  RingRecord,
} from "../metadata/metadata_service.ts";
import type { PeerListener, PeerListenerStats, Transport } from "../peer/transport.ts";
import { createRing, isMutableRing, ringTypeName, unmarshalRing } from "../ring/ring_codec.ts";
import { type Ring, RingType } from "../ring/ring.ts";
import type { SizeSpec } from "../size.ts";
import type { BlockStore } from "../storage/block_store.ts";
import { FileBlockStore } from "../storage/file_block_store.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { resolveStoreSizeBytes } from "../storage/store_size.ts";
import { dataDirPaths, ensureDataDir, readOrCreateUuid } from "./data_dir.ts";
import { LeaseKeeper } from "./lease_keeper.ts";
import { AUTO_EVICT_AFTER_MS_DEFAULT, DownTracker } from "./down_tracker.ts";
import { retryingMetadata } from "../metadata/retrying_metadata.ts";
import type { TorusNode } from "./torus_node.ts";

/** Time between two heartbeats (peer registration and peer-list refresh). */
export const HEARTBEAT_INTERVAL_MS = LEASE_RENEW_INTERVAL_MS;
/** The local store of a storage node unless `--size` says otherwise. */
export const CLUSTER_STORE_SIZE_BYTES_DEFAULT = 1024 * 1024 * 1024;
/** A client's local store (its write cache for `--write-level local`). */
export const WRITE_CACHE_BYTES_DEFAULT = 128 * 1024 * 1024;
/** Pause between rebalancer ticks that moved data, in milliseconds. */
export const REBALANCE_BUSY_PAUSE_MS = 10;
/** Pause after a rebalancer cycle that found nothing to do, in milliseconds. */
export const REBALANCE_IDLE_PAUSE_MS = 2_000;
/** Attempts of auto-join against concurrent ring changes. */
export const AUTO_JOIN_ATTEMPTS_MAX = 32;
/** The peer protocol version this build speaks, as registered. */
export const PROTOCOL_VERSION = 1;

/** What a {@linkcode ClusterNode} reports on itself (`/metrics`). */
export interface ClusterNodeStatus {
  /** The version of the ring in use. */
  ringVersion: number;
  /** Members of the ring in use. */
  ringMembers: number;
  /** The ring's replication factor. */
  replication: number;
  /** Live peers (storage nodes and clients) as of the last heartbeat. */
  livePeers: number;
  /** Heartbeats that registered this process. */
  heartbeats: number;
  /** Heartbeats that failed (etcd unreachable, lease lost). */
  failedHeartbeats: number;
  /** Ring members this node removed after they were down too long. */
  evictions: number;
  /** The distributor's counters. */
  distributor: DistributorStats;
  /** The peer listener's load; null on a client or when the transport cannot tell. */
  peerListener: PeerListenerStats | null;
  /** The rebalancer's progress; null on a client. */
  rebalance: RebalanceStatus | null;
}

/** How to open a {@linkcode ClusterNode}. */
export interface ClusterNodeOptions {
  /** Opens the metadata service for this process's uuid (the node owns and closes it). */
  openMetadata: (uuid: string) => Promise<MetadataService>;
  /** Where the metadata lives, for messages (`etcd 127.0.0.1:2379`). */
  location: string;
  /** A flag line that reaches the same metadata, for "run torusctl init …" advice. */
  initAdvice: string;
  clock: Clock;
  logger: Logger;
  /** Makes the transport for the cluster's block size and this uuid. */
  transport: (blockSizeBytes: number, uuid: string) => Transport;
  /** A storage node's data directory (uuid and block store); absent for a client. */
  dataDir?: string;
  /** Size of a storage node's block store. */
  storeSize?: SizeSpec;
  /** Serve the local store to peers here (`tdp://host:port`); a node without it only dials. */
  peerAddress?: string;
  /** Add this node to the ring when it is not a member. */
  autoJoin?: boolean;
  readLevel?: ReadLevel;
  writeLevel?: WriteLevel;
  /** Bytes of whole blocks cached from peers. */
  readCacheBytes?: number;
  /** A client's local store size, in bytes. */
  writeCacheBytes?: number;
  /**
   * On a storage node: remove a ring member that has been down this long,
   * in milliseconds, so that its blocks are copied back to full replication
   * (default {@linkcode AUTO_EVICT_AFTER_MS_DEFAULT}; 0 never: an operator
   * runs `torusctl peer remove --force`). See `down_tracker.ts`.
   */
  autoEvictAfterMs?: number;
}

/** A process in a cluster. */
export class ClusterNode implements TorusNode {
  readonly metadata: MetadataService;
  readonly location: string;
  readonly clock: Clock;
  readonly uuid: string;
  readonly global: GlobalMetadata;
  readonly distributor: Distributor;
  /** Where peers reach this node, or "" for a client. */
  readonly address: string;
  #options: ClusterNodeOptions;
  #local: BlockStore;
  #listener: PeerListener | null;
  /** Live peers by uuid, as of the last refresh (the distributor dials their addresses). */
  #peers: Map<string, PeerRecord>;
  #lease: LeaseKeeper | null = null;
  #leaseLost = false;
  #heartbeatTimer = 0;
  #heartbeats = 0;
  #down = new DownTracker();
  #evictions = 0;
  #failedHeartbeats = 0;
  #heartbeat: Promise<void> | null = null;
  #unwatch: () => void = () => {};
  #rebalancer: Rebalancer | null = null;
  #rebalancing: Promise<void> | null = null;
  #wakeRebalancer: () => void = () => {};
  #gcMarks: GcMarks | null = null;
  #context: VolumeContext;
  #closed = false;

  private constructor(
    options: ClusterNodeOptions,
    fields: {
      metadata: MetadataService;
      uuid: string;
      global: GlobalMetadata;
      local: BlockStore;
      listener: PeerListener | null;
      distributor: Distributor;
      peers: Map<string, PeerRecord>;
    },
  ) {
    this.#options = options;
    this.location = options.location;
    this.clock = options.clock;
    this.metadata = fields.metadata;
    this.uuid = fields.uuid;
    this.global = fields.global;
    this.#local = fields.local;
    this.#listener = fields.listener;
    this.distributor = fields.distributor;
    this.#peers = fields.peers;
    this.address = fields.listener?.address ?? "";
    this.#context = {
      metadata: fields.metadata,
      store: fields.distributor,
      inodes: new INodeStore(fields.distributor),
    };
  }

  /**
   * Joins the cluster: opens the metadata, the local store, the peer
   * listener and the distributor, registers this process and starts its
   * background work.
   *
   * @throws {NotInitializedError} when the cluster was never initialized.
   */
  static async open(options: ClusterNodeOptions): Promise<ClusterNode> {
    let uuid: string = crypto.randomUUID();
    if (options.dataDir !== undefined) {
      const paths = dataDirPaths(options.dataDir);
      await ensureDataDir(paths);
      uuid = await readOrCreateUuid(paths);
    }
    // Writers wait out a short etcd outage (a restart) instead of failing their FLUSH.
    const metadata = retryingMetadata(await options.openMetadata(uuid), options.clock);
    const opened: { close(): Promise<void> }[] = [metadata];
    try {
      const global = await readClusterGlobal(metadata, options);
      let local: BlockStore;
      if (options.dataDir !== undefined) {
        const blockDir = dataDirPaths(options.dataDir).blockDir;
        const sizeBytes = options.storeSize
          ? await resolveStoreSizeBytes(options.storeSize, blockDir)
          : CLUSTER_STORE_SIZE_BYTES_DEFAULT;
        local = await FileBlockStore.open({
          directory: blockDir,
          blockSizeBytes: global.blockSizeBytes,
          sizeBytes,
        });
      } else {
        const bytes = options.writeCacheBytes ?? WRITE_CACHE_BYTES_DEFAULT;
        local = new MemoryBlockStore({
          blockSizeBytes: global.blockSizeBytes,
          numBlocks: Math.max(1, Math.floor(bytes / global.blockSizeBytes)),
        });
      }
      opened.unshift(local);
      const transport = options.transport(global.blockSizeBytes, uuid);
      const listener = options.peerAddress === undefined
        ? null
        : await transport.listen(options.peerAddress, local);
      if (listener) opened.unshift(listener);
      const ring = unmarshalRing((await metadata.getRing()).bytes);
      const peers = new Map<string, PeerRecord>();
      const distributor = new Distributor({
        selfUuid: uuid,
        local,
        transport,
        ring,
        peerAddress: (peer) => peers.get(peer)?.address || undefined,
        clock: options.clock,
        readLevel: options.readLevel,
        writeLevel: options.writeLevel,
        readCacheBytes: options.readCacheBytes,
        logger: options.logger,
      });
      const node = new ClusterNode(options, {
        metadata,
        uuid,
        global,
        local,
        listener,
        distributor,
        peers,
      });
      await node.#start();
      return node;
    } catch (error) {
      for (const resource of opened) await resource.close().catch(() => {});
      throw error;
    }
  }

  /** The ring the distributor places blocks with. */
  get ring(): Ring {
    return this.distributor.ring;
  }

  /** Whether this process serves blocks to peers (a storage node). */
  get isStorageNode(): boolean {
    return this.#listener !== null;
  }

  /** Live peers as of the last heartbeat. */
  peers(): PeerRecord[] {
    return [...this.#peers.values()];
  }

  /** What this node reports on itself (`/metrics`). */
  status(): ClusterNodeStatus {
    const ring = this.distributor.ring;
    return {
      ringVersion: ring.version,
      ringMembers: ring.members().length,
      replication: ring.replication,
      livePeers: this.#peers.size,
      heartbeats: this.#heartbeats,
      failedHeartbeats: this.#failedHeartbeats,
      evictions: this.#evictions,
      distributor: this.distributor.stats(),
      peerListener: this.#listener?.stats?.() ?? null,
      rebalance: this.rebalanceStatus(),
    };
  }

  /** The rebalancer's progress, or null on a node that does not rebalance. */
  rebalanceStatus(): RebalanceStatus | null {
    return this.#rebalancer?.status() ?? null;
  }

  async globalMetadata(): Promise<GlobalMetadata> {
    return await readClusterGlobal(this.metadata, this.#options);
  }

  initialize(): Promise<void> {
    return Promise.reject(
      new AlreadyExistsError(`The cluster at ${this.location} is already initialized`),
    );
  }

  async volumes(): Promise<VolumeContext> {
    return this.#context;
  }

  async lease(): Promise<LeaseKeeper> {
    if (this.#lease === null || this.#leaseLost) await this.#renewLeaseKeeper();
    return this.#lease!;
  }

  /**
   * Deletes local blocks that no volume or snapshot references (marking
   * reads INodes through the distributor; only this node's copies go).
   */
  async collectGarbage(): Promise<GcResult> {
    const context = { ...this.#context, store: this.#local };
    const marks = await markLiveBlocks(this.#context);
    this.#gcMarks = marks;
    if (marks === null) {
      return { ran: false, deletedBlocks: 0, keptBlocks: this.#local.usedBlocks() };
    }
    return await collectGarbage(context, marks);
  }

  /** Stops background work, deregisters (revokes the lease), closes stores and connections. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#options.clock.clearTimer(this.#heartbeatTimer);
    this.#unwatch();
    const errors: unknown[] = [];
    this.#wakeRebalancer();
    await this.#heartbeat?.catch(() => {});
    await this.#rebalancing?.catch(() => {});
    await this.#listener?.close().catch((error) => errors.push(error));
    await this.distributor.close().catch((error) => errors.push(error));
    await this.#lease?.close().catch((error) => errors.push(error));
    await this.metadata.close().catch((error) => errors.push(error));
    if (errors.length > 0) throw errors[0];
  }

  async #start(): Promise<void> {
    this.#unwatch = this.metadata.watchRing((record) => this.#onRing(record));
    // The ring may have changed between reading it and watching it.
    this.#onRing(await this.metadata.getRing());
    await this.#renewLeaseKeeper();
    await this.#beat();
    if (this.#listener !== null && this.#options.autoJoin) await this.#autoJoin();
    this.#scheduleHeartbeat();
    if (this.#listener !== null || this.#options.writeLevel === "local") {
      this.#rebalancer = new Rebalancer({
        distributor: this.distributor,
        clock: this.#options.clock,
        isDead: (ref) => this.#gcMarks?.isDead(ref) ?? false,
        logger: this.#options.logger,
      });
      this.#rebalancing = this.#rebalanceLoop();
    }
  }

  #onRing(record: RingRecord): void {
    let ring: Ring;
    try {
      ring = unmarshalRing(record.bytes);
    } catch (error) {
      this.#options.logger.log("error", `ignoring an unreadable ring: ${(error as Error).message}`);
      return;
    }
    if (this.distributor.setRing(ring)) {
      // New members registered just before joining: learn their addresses now.
      if (!this.#closed) {
        this.refreshPeers().catch((error) => {
          this.#options.logger.log("warn", `peer refresh failed: ${(error as Error).message}`);
        });
      }
      this.#options.logger.log(
        "info",
        `ring version ${ring.version} (${
          ringTypeName(ring.type)
        }, ${ring.members().length} members, replication ${ring.replication})`,
      );
      if (ring.members().length > 0 && ring.replication > ring.members().length) {
        this.#options.logger.log(
          "warn",
          `the ring has ${ring.members().length} member(s) for replication ${ring.replication}: running degraded`,
        );
      }
    }
  }

  async #renewLeaseKeeper(): Promise<void> {
    const old = this.#lease;
    this.#lease = await LeaseKeeper.start(this.metadata, this.#options.clock, {
      onLost: (error) => {
        this.#leaseLost = true;
        this.#options.logger.log(
          "warn",
          `lease lost (${(error as Error).message}); registering with a new one`,
        );
      },
    });
    this.#leaseLost = false;
    if (old) await old.close().catch(() => {});
  }

  #scheduleHeartbeat(): void {
    if (this.#closed) return;
    this.#heartbeatTimer = this.#options.clock.setTimer(HEARTBEAT_INTERVAL_MS, () => {
      this.#heartbeat = this.#beat().then(() => {
        this.#heartbeats++;
      }, (error) => {
        this.#failedHeartbeats++;
        this.#options.logger.log("warn", `heartbeat failed: ${(error as Error).message}`);
      }).finally(() => {
        this.#heartbeat = null;
        this.#scheduleHeartbeat();
      });
    });
  }

  /** Registers this process and refreshes the peer list. */
  async #beat(): Promise<void> {
    if (this.#leaseLost) await this.#renewLeaseKeeper();
    const status = this.#rebalancer?.status();
    await this.metadata.registerPeer(this.#lease!.lease, {
      uuid: this.uuid,
      address: this.address,
      lastSeenMs: this.#options.clock.nowMs(),
      totalBlocks: this.#listener ? this.#local.numBlocks() : 0,
      usedBlocks: this.#listener ? this.#local.usedBlocks() : 0,
      rebalancing: status?.rebalancing ?? false,
      lastRebalanceFinishMs: status?.lastRebalanceFinishMs ?? 0,
      lastRebalanceBlocks: status?.lastRebalanceBlocks ?? 0,
      protocolVersion: PROTOCOL_VERSION,
    });
    await this.refreshPeers();
    try {
      await this.#evictIfDown();
    } catch (error) {
      this.#options.logger.log("warn", `auto-evict skipped: ${(error as Error).message}`);
    }
  }

  /**
   * On a storage node, removes from the ring the member that has been down
   * longest once it has been down {@linkcode ClusterNodeOptions.autoEvictAfterMs}
   * (see `down_tracker.ts` for when it holds back). The ring is re-read and
   * swapped by compare-and-swap: when several nodes decide at once, one wins
   * and the others see the new ring.
   */
  async #evictIfDown(): Promise<void> {
    const afterMs = this.#options.autoEvictAfterMs ?? AUTO_EVICT_AFTER_MS_DEFAULT;
    if (afterMs <= 0 || !this.isStorageNode) return;
    const ring = this.distributor.ring;
    const members = ring.members().map((member) => member.uuid);
    const nowMs = this.#options.clock.nowMs();
    this.#down.observe(nowMs, members, new Set(this.#peers.keys()));
    const uuid = this.#down.candidate(nowMs, afterMs, { members, replication: ring.replication });
    if (uuid === null) return;
    const record = await this.metadata.getRing();
    const current = unmarshalRing(record.bytes);
    if (!isMutableRing(current) || !current.members().some((member) => member.uuid === uuid)) {
      return;
    }
    const next = current.removePeers([uuid]);
    try {
      await this.metadata.setRing({ version: next.version, bytes: next.marshal() });
    } catch (error) {
      if (error instanceof ConflictError) return; // another node changed the ring first
      throw error;
    }
    this.#onRing({ version: next.version, bytes: next.marshal() });
    this.#evictions++;
    const downMinutes = (nowMs - this.#down.downSinceMs(uuid)!) / 60_000;
    this.#options.logger.log(
      "warn",
      `removed node ${uuid} from the ring (version ${next.version}): down for ${
        downMinutes.toFixed(1)
      } min; its blocks are being copied to their new owners`,
    );
  }

  /** Reloads the live peers (addresses the distributor dials). */
  async refreshPeers(): Promise<void> {
    const peers = await this.metadata.listPeers();
    this.#peers.clear();
    for (const peer of peers) this.#peers.set(peer.uuid, peer);
  }

  async #autoJoin(): Promise<void> {
    for (let attempt = 0; attempt < AUTO_JOIN_ATTEMPTS_MAX; attempt++) {
      const record = await this.metadata.getRing();
      const ring = unmarshalRing(record.bytes);
      if (ring.members().some((member) => member.uuid === this.uuid)) return;
      if (!isMutableRing(ring)) {
        throw new TypeError(
          `Cannot auto-join: a ${
            ringTypeName(ring.type)
          } ring cannot add peers (torusctl ring manual-change)`,
        );
      }
      const next = ring.addPeers([{ uuid: this.uuid, totalBlocks: this.#local.numBlocks() }]);
      try {
        await this.metadata.setRing({ version: next.version, bytes: next.marshal() });
        this.#onRing({ version: next.version, bytes: next.marshal() });
        this.#options.logger.log("info", `joined the ring at version ${next.version}`);
        return;
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
      }
    }
    throw new ConflictError(
      `Cannot auto-join: the ring changed ${AUTO_JOIN_ATTEMPTS_MAX} times while joining`,
    );
  }

  async #rebalanceLoop(): Promise<void> {
    const clock = this.#options.clock;
    while (!this.#closed) {
      let pause = REBALANCE_IDLE_PAUSE_MS;
      try {
        const report = await this.#rebalancer!.tick();
        if (!report.cycleDone || report.sentBlocks > 0) pause = REBALANCE_BUSY_PAUSE_MS;
      } catch (error) {
        this.#options.logger.log("warn", `rebalance tick failed: ${(error as Error).message}`);
      }
      if (this.#closed) break;
      await new Promise<void>((resolve) => {
        const timer = clock.setTimer(pause, resolve);
        this.#wakeRebalancer = () => {
          clock.clearTimer(timer);
          resolve();
        };
      });
      this.#wakeRebalancer = () => {};
    }
  }
}

/**
 * The cluster's global metadata.
 *
 * @throws {NotInitializedError} naming `location` and what to run (`initAdvice`).
 */
export async function readClusterGlobal(
  metadata: MetadataService,
  options: Pick<ClusterNodeOptions, "location" | "initAdvice">,
): Promise<GlobalMetadata> {
  try {
    return await metadata.globalMetadata();
  } catch (error) {
    if (error instanceof NotInitializedError) {
      throw new NotInitializedError(
        `The cluster at ${options.location} is not initialized: run ${options.initAdvice}`,
        { cause: error },
      );
    }
    throw error;
  }
}

/** What `torusctl init` creates in a cluster. */
export interface ClusterInitOptions {
  global: GlobalMetadata;
  /** The first ring's type: `ketama` by default, `empty` for `--no-ring`. */
  ringType?: RingType;
  /** The first ring's replication factor (2 by default, as in the original). */
  replication?: number;
}

/** Replication of a new cluster's ring. */
export const CLUSTER_REPLICATION_DEFAULT = 2;

/**
 * Formats a cluster's metadata: global metadata and ring version 1 with no
 * members (nodes join with `torusd --auto-join` or `torusctl peer add`).
 *
 * @throws {AlreadyExistsError} when it is already initialized.
 */
export async function initializeCluster(
  metadata: MetadataService,
  options: ClusterInitOptions,
): Promise<void> {
  const ring = createRing(options.ringType ?? RingType.ketama, {
    version: 1,
    replication: options.replication ?? CLUSTER_REPLICATION_DEFAULT,
    peers: [],
  });
  await metadata.initialize(options.global, { version: 1, bytes: ring.marshal() });
}
