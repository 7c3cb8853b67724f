/**
 * A {@linkcode LocalNode}: one data directory opened by a Torus process on
 * one machine, with the embedded metadata store and the file block store.
 *
 * torusd, torusctl and torusblk all open the metadata (SQLite in WAL mode is
 * safe for all three at once). The block store is single-process: it is
 * opened only by the process that reads or writes block data, on demand.
 *
 * @module
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { type Clock, SystemClock } from "../clock.ts";
import { NotInitializedError } from "../errors.ts";
import { INodeStore } from "../inode/inode_store.ts";
import type { GlobalMetadata, MetadataService } from "../metadata/metadata_service.ts";
import { SqliteMetadata } from "../metadata/sqlite_metadata.ts";
import { RingSchema } from "../models/torus_pb.ts";
import type { SizeSpec } from "../size.ts";
import { DATA_FILE_NAME, FileBlockStore } from "../storage/file_block_store.ts";
import { resolveStoreSizeBytes } from "../storage/store_size.ts";
import { STORE_SIZE_BYTES_DEFAULT } from "../constants.ts";
import type { VolumeContext } from "../block/block_volume.ts";
import { parseBlockSpec } from "../blockset/spec.ts";
import {
  dataDirExists,
  type DataDirPaths,
  dataDirPaths,
  ensureDataDir,
  readOrCreateUuid,
} from "./data_dir.ts";
import { LeaseKeeper } from "./lease_keeper.ts";
import type { TorusNode } from "./torus_node.ts";
import { join } from "node:path";

/** Options of {@linkcode LocalNode.open}. */
export interface LocalNodeOptions {
  /** The data directory. */
  dataDir: string;
  /** Create the directory when it is missing (torusd, `torusctl init`). */
  create?: boolean;
  /** Time source; the system clock by default. */
  clock?: Clock;
}

/** The ring an embedded store starts with: version 1, no peers. */
export function initialRingBytes(): Uint8Array {
  return toBinary(RingSchema, create(RingSchema, { type: 0, version: 1, replicationFactor: 1 }));
}

/** A data directory, open. */
export class LocalNode implements TorusNode {
  readonly paths: DataDirPaths;
  /** The data directory. */
  readonly location: string;
  readonly metadata: MetadataService;
  readonly clock: Clock;
  #context: VolumeContext | null = null;
  #store: FileBlockStore | null = null;
  #lease: LeaseKeeper | null = null;

  private constructor(paths: DataDirPaths, metadata: MetadataService, clock: Clock) {
    this.paths = paths;
    this.location = paths.root;
    this.metadata = metadata;
    this.clock = clock;
  }

  /**
   * Opens the metadata of a data directory.
   *
   * @throws {NotInitializedError} when the directory has no metadata and `create` is off.
   */
  static async open(options: LocalNodeOptions): Promise<LocalNode> {
    const paths = dataDirPaths(options.dataDir);
    if (!options.create && !(await dataDirExists(options.dataDir))) {
      throw new NotInitializedError(notInitializedMessage(options.dataDir));
    }
    await ensureDataDir(paths);
    const clock = options.clock ?? new SystemClock();
    const uuid = await readOrCreateUuid(paths);
    const metadata = await SqliteMetadata.open({ path: paths.metadataDb, clock, uuid });
    return new LocalNode(paths, metadata, clock);
  }

  /**
   * Formats the metadata (`torusctl init`).
   *
   * @throws {AlreadyExistsError} when it is already initialized.
   * @throws {SyntaxError|RangeError} on a bad spec or block size.
   */
  async initialize(metadata: GlobalMetadata): Promise<void> {
    parseBlockSpec(metadata.defaultBlockSpec);
    await this.metadata.initialize(metadata, { version: 1, bytes: initialRingBytes() });
  }

  /** The global metadata. @throws {NotInitializedError} with what to run. */
  async globalMetadata(): Promise<GlobalMetadata> {
    try {
      return await this.metadata.globalMetadata();
    } catch (error) {
      if (error instanceof NotInitializedError) {
        throw new NotInitializedError(notInitializedMessage(this.paths.root), { cause: error });
      }
      throw error;
    }
  }

  /**
   * Opens the block store (once) and returns what volume operations need.
   * `size` applies when the store is created or grown; by default an existing
   * store keeps its size and a new one gets 1 GiB.
   */
  async volumes(size?: SizeSpec): Promise<VolumeContext> {
    if (this.#context) return this.#context;
    const { blockSizeBytes } = await this.globalMetadata();
    const sizeBytes = size
      ? await resolveStoreSizeBytes(size, this.paths.blockDir)
      : await existingStoreSizeBytes(this.paths.blockDir) ?? STORE_SIZE_BYTES_DEFAULT;
    const store = await FileBlockStore.open({
      directory: this.paths.blockDir,
      blockSizeBytes,
      sizeBytes,
    });
    this.#store = store;
    this.#context = { metadata: this.metadata, store, inodes: new INodeStore(store) };
    await this.#revokePredecessorLease();
    return this.#context;
  }

  /**
   * Holding the block store's exclusive lock proves that the process which
   * held it before us (a torusd killed with -9, say) is dead: revoke its
   * lease now, releasing its volume locks, instead of making every volume it
   * had open wait out the lease's TTL. Safe under fencing: a lock revoked
   * here can commit nothing more.
   */
  async #revokePredecessorLease(): Promise<void> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.paths.storeLeaseFile);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    const id = Number(text.trim());
    if (Number.isSafeInteger(id) && id > 0) {
      await this.metadata.revokeLease({ id, ttlMs: 0 });
    }
    await Deno.remove(this.paths.storeLeaseFile).catch(() => {});
  }

  /** This process's lease (granted on first use, renewed until close). */
  async lease(): Promise<LeaseKeeper> {
    if (!this.#lease) {
      this.#lease = await LeaseKeeper.start(this.metadata, this.clock);
      if (this.#store) {
        // Our successor at the block store revokes it if we die holding it.
        await Deno.writeTextFile(this.paths.storeLeaseFile, `${this.#lease.lease.id}\n`);
      }
    }
    return this.#lease;
  }

  /** Flushes and closes the block store, revokes the lease, closes the metadata. */
  async close(): Promise<void> {
    const errors: unknown[] = [];
    await this.#lease?.close().catch((error) => errors.push(error));
    if (this.#store && this.#lease) await Deno.remove(this.paths.storeLeaseFile).catch(() => {});
    await this.#store?.close().catch((error) => errors.push(error));
    await this.metadata.close().catch((error) => errors.push(error));
    this.#store = null;
    this.#context = null;
    this.#lease = null;
    if (errors.length > 0) throw errors[0];
  }
}

/** The size of an existing block store's data file, or null when there is none. */
async function existingStoreSizeBytes(blockDir: string): Promise<number | null> {
  try {
    return (await Deno.stat(join(blockDir, DATA_FILE_NAME))).size;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

function notInitializedMessage(dataDir: string): string {
  return `Data directory "${dataDir}" is not initialized: run "torusctl init --data-dir ${dataDir}" (or start torusd with --auto-init)`;
}
