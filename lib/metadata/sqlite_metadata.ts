/**
 * A {@linkcode MetadataService} in one SQLite file: the embedded store of a
 * single machine, shared by `torusd`, `torusctl` and `torusblk`, which may all
 * have it open at once.
 *
 * Concurrency: the file is in WAL mode, every connection waits up to
 * {@linkcode SQLITE_BUSY_TIMEOUT_MS} for another process's write lock, and
 * every operation of more than one statement runs in one `BEGIN IMMEDIATE`
 * transaction, so each method is atomic across processes. `node:sqlite` is
 * synchronous: a method never suspends inside a transaction, and while it
 * waits for another process's lock it blocks this process's event loop.
 *
 * Time: leases carry `expires_at_ms` from the clock of the process that
 * granted or renewed them; a lease (and the lock or peer record bound to it)
 * is alive while `expires_at_ms > clock.nowMs()` of the process asking.
 *
 * Ids: volume ids and lease ids come from `AUTOINCREMENT` columns and are
 * never reused, so a deleted volume's blocks or a dead lease's lock can never
 * be mistaken for a new one's. Lock fences grow per volume and are never reset.
 *
 * @module
 */
import {
  DatabaseSync,
  type SQLInputValue,
  type SQLOutputValue,
  type StatementSync,
} from "node:sqlite";
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
  decodeGlobalMetadata,
  encodeGlobalMetadata,
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

/**
 * How long a statement waits for another connection's lock before it fails
 * with `database is locked`, in milliseconds. Transactions here take
 * microseconds, so 5 s only runs out when a process hangs holding the lock.
 */
export const SQLITE_BUSY_TIMEOUT_MS = 5_000;

/**
 * How often {@linkcode SqliteMetadata.watchRing} reads the ring version, in
 * milliseconds of the injected clock. A ring set by another process reaches
 * watchers within this interval; a ring set through the same instance
 * reaches them at once.
 */
export const RING_POLL_INTERVAL_MS = 1_000;

/** The schema version this code reads and writes (stored in `meta`). */
export const SQLITE_SCHEMA_VERSION = 1;

const SCHEMA_V1 = `
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value NOT NULL
) WITHOUT ROWID;
CREATE TABLE ring (
  singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
  version INTEGER NOT NULL,
  bytes BLOB NOT NULL
);
CREATE TABLE volumes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  inode_counter INTEGER NOT NULL,
  current_inode INTEGER NOT NULL,
  lock_owner TEXT,
  lock_lease_id INTEGER,
  lock_fence INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE snapshots (
  volume_id INTEGER NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  inode INTEGER NOT NULL,
  PRIMARY KEY (volume_id, name)
) WITHOUT ROWID;
CREATE TABLE leases (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ttl_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL
);
CREATE TABLE peers (
  uuid TEXT PRIMARY KEY,
  lease_id INTEGER NOT NULL,
  address TEXT NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  total_blocks INTEGER NOT NULL,
  used_blocks INTEGER NOT NULL,
  rebalancing INTEGER NOT NULL,
  last_rebalance_finish_ms INTEGER NOT NULL,
  last_rebalance_blocks INTEGER NOT NULL,
  protocol_version INTEGER NOT NULL
) WITHOUT ROWID;
`;

type Row = Record<string, SQLOutputValue>;

function corrupt(column: string, value: SQLOutputValue | undefined): SyntaxError {
  return new SyntaxError(
    `Cannot read metadata database: column "${column}" holds an unexpected ${typeof value}`,
  );
}

function integerOf(row: Row, column: string): number {
  const value = row[column];
  if (typeof value !== "number" || !Number.isSafeInteger(value)) throw corrupt(column, value);
  return value;
}

function textOf(row: Row, column: string): string {
  const value = row[column];
  if (typeof value !== "string") throw corrupt(column, value);
  return value;
}

function bytesOf(row: Row, column: string): Uint8Array {
  const value = row[column];
  if (!(value instanceof Uint8Array)) throw corrupt(column, value);
  return value;
}

function volumeOf(row: Row): VolumeInfo {
  const type = textOf(row, "type");
  if (type !== "block") throw corrupt("type", type);
  return {
    name: textOf(row, "name"),
    id: integerOf(row, "id"),
    type,
    sizeBytes: integerOf(row, "size_bytes"),
  };
}

function peerOf(row: Row): PeerRecord {
  return {
    uuid: textOf(row, "uuid"),
    address: textOf(row, "address"),
    lastSeenMs: integerOf(row, "last_seen_ms"),
    totalBlocks: integerOf(row, "total_blocks"),
    usedBlocks: integerOf(row, "used_blocks"),
    rebalancing: integerOf(row, "rebalancing") !== 0,
    lastRebalanceFinishMs: integerOf(row, "last_rebalance_finish_ms"),
    lastRebalanceBlocks: integerOf(row, "last_rebalance_blocks"),
    protocolVersion: integerOf(row, "protocol_version"),
  };
}

/** Options of {@linkcode SqliteMetadata.open}. */
export interface SqliteMetadataOptions {
  /** The database file; created, with its schema, when missing. */
  path: string;
  /** Time source of lease expiry, snapshot times and ring polling. */
  clock: Clock;
  /**
   * This process's identity.
   * @default {crypto.randomUUID()}
   */
  uuid?: string;
}

interface RingWatcher {
  active: boolean;
  lastVersion: number;
  timerId: number;
  callback: (ring: RingRecord) => void;
}

/**
 * A {@linkcode MetadataService} on `node:sqlite`.
 *
 * @example Usage
 * ```ts
 * import { ManualClock } from "../clock.ts";
 * import { SqliteMetadata } from "./sqlite_metadata.ts";
 * const directory = await Deno.makeTempDir();
 * const metadata = await SqliteMetadata.open({
 *   path: `${directory}/metadata.db`,
 *   clock: new ManualClock(0),
 * });
 * await metadata.initialize({ blockSizeBytes: 4096, defaultBlockSpec: "crc,base" }, {
 *   version: 1,
 *   bytes: new Uint8Array(),
 * });
 * const volume = await metadata.createVolume("vol1", 1 << 20);
 * if (volume.id !== 1) throw new Error("the first volume gets id 1");
 * await metadata.close();
 * await Deno.remove(directory, { recursive: true });
 * ```
 */
export class SqliteMetadata implements MetadataService {
  /** Always `sqlite`. */
  readonly kind = "sqlite";
  /** This process's identity. */
  readonly uuid: string;
  #db: DatabaseSync;
  #clock: Clock;
  #statements = new Map<string, StatementSync>();
  #watchers = new Set<RingWatcher>();
  #closed = false;

  private constructor(db: DatabaseSync, clock: Clock, uuid: string) {
    this.#db = db;
    this.#clock = clock;
    this.uuid = uuid;
  }

  /**
   * Opens (creating if needed) the database at `path`: WAL mode, busy
   * timeout, and the schema created or checked.
   *
   * @throws {SyntaxError} when the file has a schema version this code does not know.
   */
  static open(options: SqliteMetadataOptions): Promise<SqliteMetadata> {
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(options.path);
      // Set first, so that the statements below wait for other processes too.
      db.exec(`PRAGMA busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
      const mode = db.prepare("PRAGMA journal_mode = WAL").get()?.journal_mode;
      if (mode !== "wal" && options.path !== ":memory:") {
        throw new Error(`Cannot open metadata database "${options.path}": WAL mode refused`);
      }
      // FULL: a committed INode or lock survives power loss, not just a crash.
      db.exec("PRAGMA synchronous = FULL");
      db.exec("PRAGMA foreign_keys = ON");
      const metadata = new SqliteMetadata(db, options.clock, options.uuid ?? crypto.randomUUID());
      metadata.#write(() => metadata.#migrate(options.path));
      return Promise.resolve(metadata);
    } catch (error) {
      db?.close();
      return Promise.reject(error);
    }
  }

  /** Creates the schema in a new file, or checks its version. */
  #migrate(path: string): void {
    const table = this.#db.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
    ).get();
    if (table === undefined) {
      this.#db.exec(SCHEMA_V1);
      this.#db.prepare("INSERT INTO meta (key, value) VALUES ('schema_version', ?)")
        .run(SQLITE_SCHEMA_VERSION);
      return;
    }
    const row = this.#db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get();
    if (row?.value !== SQLITE_SCHEMA_VERSION) {
      throw new SyntaxError(
        `Cannot open metadata database "${path}": schema version ${
          String(row?.value)
        } is not supported, expected ${SQLITE_SCHEMA_VERSION}`,
      );
    }
  }

  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  #get(sql: string, ...parameters: SQLInputValue[]): Row | undefined {
    return this.#statement(sql).get(...parameters);
  }

  #all(sql: string, ...parameters: SQLInputValue[]): Row[] {
    return this.#statement(sql).all(...parameters);
  }

  /** Runs a statement; returns the number of rows it changed. */
  #change(sql: string, ...parameters: SQLInputValue[]): number {
    return Number(this.#statement(sql).run(...parameters).changes);
  }

  /** Runs `body` in one `BEGIN IMMEDIATE` transaction, rolled back if it throws. */
  #write<T>(body: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const result = body();
      this.#db.exec("COMMIT");
      return result;
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  /** Runs `body` and turns what it returns or throws into a promise. */
  #run<T>(operation: string, body: () => T): Promise<T> {
    try {
      if (this.#closed) throw new ClosedError(closedMessage(this, operation));
      return Promise.resolve(body());
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #volumeRow(volumeId: number, operation: string): Row {
    checkVolumeId(volumeId);
    const row = this.#get("SELECT * FROM volumes WHERE id = ?", volumeId);
    if (row === undefined) {
      throw new VolumeNotFoundError(`Cannot ${operation}: volume id ${volumeId} does not exist`);
    }
    return row;
  }

  /** True when the lease exists and has not expired by this process's clock. */
  #leaseAlive(leaseId: number): boolean {
    return this.#get(
      "SELECT 1 FROM leases WHERE id = ? AND expires_at_ms > ?",
      leaseId,
      this.#clock.nowMs(),
    ) !== undefined;
  }

  /** True when the volume row's lock is bound to a live lease. */
  #lockHeld(row: Row): boolean {
    const leaseId = row.lock_lease_id;
    return row.lock_owner !== null && typeof leaseId === "number" && this.#leaseAlive(leaseId);
  }

  /** @throws {NotInitializedError} before `initialize`. */
  globalMetadata(): Promise<GlobalMetadata> {
    return this.#run("read global metadata", () => {
      const row = this.#get("SELECT value FROM meta WHERE key = 'global_metadata'");
      if (row === undefined) {
        throw new NotInitializedError(
          "Cannot read global metadata: the metadata is not initialized",
        );
      }
      return decodeGlobalMetadata(textOf(row, "value"));
    });
  }

  /** @throws {AlreadyExistsError} when already initialized. */
  initialize(metadata: GlobalMetadata, ring: RingRecord): Promise<void> {
    return this.#run("initialize metadata", () => {
      checkGlobalMetadata(metadata);
      checkRing(ring);
      this.#write(() => {
        if (this.#get("SELECT 1 FROM meta WHERE key = 'global_metadata'") !== undefined) {
          throw new AlreadyExistsError("Cannot initialize metadata: it is already initialized");
        }
        this.#change(
          "INSERT INTO meta (key, value) VALUES ('global_metadata', ?)",
          encodeGlobalMetadata(metadata),
        );
        this.#change(
          "INSERT OR REPLACE INTO ring (singleton, version, bytes) VALUES (1, ?, ?)",
          ring.version,
          ring.bytes,
        );
      });
    });
  }

  /**
   * @throws {NotInitializedError} before `initialize`.
   * @throws {AlreadyExistsError} when the name is taken.
   * @throws {RangeError} on a bad name or size.
   */
  createVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    return this.#run(`create volume "${name}"`, () => {
      checkName("volume", name);
      checkVolumeSizeBytes(name, sizeBytes);
      return this.#write(() => {
        if (this.#get("SELECT 1 FROM meta WHERE key = 'global_metadata'") === undefined) {
          throw new NotInitializedError(
            `Cannot create volume "${name}": the metadata is not initialized`,
          );
        }
        if (this.#get("SELECT 1 FROM volumes WHERE name = ?", name) !== undefined) {
          throw new AlreadyExistsError(`Cannot create volume "${name}": it already exists`);
        }
        const row = this.#get(
          `INSERT INTO volumes (name, type, size_bytes, inode_counter, current_inode)
           VALUES (?, 'block', ?, 1, 1) RETURNING *`,
          name,
          sizeBytes,
        );
        if (row === undefined) throw corrupt("id", undefined);
        const volume = volumeOf(row);
        // Throwing rolls the insert back; AUTOINCREMENT then hands out the same id again.
        checkNewVolumeId(name, volume.id);
        return volume;
      });
    });
  }

  /** @throws {VolumeNotFoundError} */
  getVolume(name: string): Promise<VolumeInfo> {
    return this.#run(`get volume "${name}"`, () => {
      const row = this.#get("SELECT * FROM volumes WHERE name = ?", name);
      if (row === undefined) {
        throw new VolumeNotFoundError(`Cannot get volume "${name}": it does not exist`);
      }
      return volumeOf(row);
    });
  }

  /** Every volume, by name. */
  listVolumes(): Promise<VolumeInfo[]> {
    return this.#run("list volumes", () => {
      const volumes = this.#all("SELECT * FROM volumes").map(volumeOf);
      volumes.sort((left, right) => compareStrings(left.name, right.name));
      return volumes;
    });
  }

  /** The largest volume id ever handed out (AUTOINCREMENT's sequence). */
  volumeIdHighwater(): Promise<number> {
    return this.#run("read the volume id highwater", () => {
      const rows = this.#all("SELECT seq FROM sqlite_sequence WHERE name = 'volumes'");
      return Number(rows[0]?.seq ?? 0);
    });
  }

  /**
   * Grows the volume's `size_bytes` to `sizeBytes` in one transaction: it
   * reads the row to refuse shrinking, then updates that column alone; its
   * current size is a no-op. The INode columns, lock and snapshots are
   * untouched, and a held lock does not prevent it.
   *
   * @throws {VolumeNotFoundError}
   * @throws {RangeError} on a bad size, or one smaller than the volume's.
   */
  resizeVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    return this.#run(`resize volume "${name}"`, () => {
      checkVolumeSizeBytes(name, sizeBytes, "resize");
      return this.#write(() => {
        const row = this.#get("SELECT * FROM volumes WHERE name = ?", name);
        if (row === undefined) {
          throw new VolumeNotFoundError(`Cannot resize volume "${name}": it does not exist`);
        }
        const volume = volumeOf(row);
        checkNotShrinking(volume, sizeBytes);
        if (sizeBytes === volume.sizeBytes) return volume;
        const updated = this.#get(
          "UPDATE volumes SET size_bytes = ? WHERE id = ? RETURNING *",
          sizeBytes,
          volume.id,
        );
        if (updated === undefined) throw corrupt("id", undefined);
        return volumeOf(updated);
      });
    });
  }

  /**
   * Deletes the volume, its counters, lock and snapshots, by exact id. Its id
   * is never reused.
   *
   * @throws {VolumeNotFoundError}
   * @throws {VolumeInUseError} when a live lease holds its lock.
   */
  deleteVolume(name: string): Promise<void> {
    return this.#run(`delete volume "${name}"`, () => {
      this.#write(() => {
        const row = this.#get("SELECT * FROM volumes WHERE name = ?", name);
        if (row === undefined) {
          throw new VolumeNotFoundError(`Cannot delete volume "${name}": it does not exist`);
        }
        if (this.#lockHeld(row)) {
          throw new VolumeInUseError(
            `Cannot delete volume "${name}": it is in use by ${textOf(row, "lock_owner")}`,
          );
        }
        const id = integerOf(row, "id");
        this.#change("DELETE FROM snapshots WHERE volume_id = ?", id);
        this.#change("DELETE FROM volumes WHERE id = ?", id);
      });
    });
  }

  /** @throws {VolumeNotFoundError} */
  nextINode(volumeId: number): Promise<number> {
    return this.#run(`allocate an INode of volume id ${volumeId}`, () => {
      checkVolumeId(volumeId);
      const row = this.#get(
        "UPDATE volumes SET inode_counter = inode_counter + 1 WHERE id = ? RETURNING inode_counter",
        volumeId,
      );
      if (row === undefined) {
        throw new VolumeNotFoundError(
          `Cannot allocate an INode: volume id ${volumeId} does not exist`,
        );
      }
      return integerOf(row, "inode_counter");
    });
  }

  /** @throws {VolumeNotFoundError} */
  inodeCounter(volumeId: number): Promise<number> {
    return this.#run(`read the INode counter of volume id ${volumeId}`, () => {
      const row = this.#volumeRow(volumeId, "read the INode counter");
      return integerOf(row, "inode_counter");
    });
  }

  /** @throws {VolumeNotFoundError} */
  currentINode(volumeId: number): Promise<INodeRef> {
    return this.#run(`read the current INode of volume id ${volumeId}`, () => {
      const row = this.#volumeRow(volumeId, "read the current INode");
      return new INodeRef(volumeId, integerOf(row, "current_inode"));
    });
  }

  /**
   * Commits `inode` in one conditional update: it changes the row only while
   * `lock` is the volume's lock and its lease is alive by this process's clock.
   *
   * @throws {FencedError} when `lock` no longer holds the volume's lock: it
   * was released or taken over, or its lease expired (even if nobody else
   * took the lock since).
   * @throws {RangeError} when `inode` belongs to another volume.
   */
  commitINode(lock: LockToken, inode: INodeRef): Promise<void> {
    return this.#run(`commit INode ${inode.inode} of volume id ${lock.volumeId}`, () => {
      if (inode.volume !== lock.volumeId) {
        throw new RangeError(
          `Cannot commit INode (${inode}) under the lock of volume id ${lock.volumeId}`,
        );
      }
      const changes = this.#change(
        `UPDATE volumes SET current_inode = ?
         WHERE id = ? AND lock_owner = ? AND lock_lease_id = ? AND lock_fence = ?
           AND EXISTS (SELECT 1 FROM leases WHERE id = ? AND expires_at_ms > ?)`,
        inode.inode,
        lock.volumeId,
        lock.owner,
        lock.leaseId,
        lock.fence,
        lock.leaseId,
        this.#clock.nowMs(),
      );
      if (changes !== 1) {
        throw new FencedError(
          `Cannot commit INode ${inode.inode} of volume id ${lock.volumeId}: ` +
            `lock fence ${lock.fence} of ${lock.owner} no longer holds the volume`,
        );
      }
    });
  }

  /**
   * Grants a lease expiring `ttlMs` from now. Also forgets expired leases and
   * what was bound to them, which changes no answer.
   *
   * @throws {RangeError} on a `ttlMs` that is not a positive integer.
   */
  grantLease(ttlMs: number): Promise<Lease> {
    return this.#run("grant a lease", () => {
      checkTtlMs(ttlMs);
      const nowMs = this.#clock.nowMs();
      return this.#write(() => {
        this.#change("DELETE FROM leases WHERE expires_at_ms <= ?", nowMs);
        this.#change("DELETE FROM peers WHERE lease_id NOT IN (SELECT id FROM leases)");
        this.#change(
          `UPDATE volumes SET lock_owner = NULL, lock_lease_id = NULL
           WHERE lock_lease_id IS NOT NULL AND lock_lease_id NOT IN (SELECT id FROM leases)`,
        );
        const row = this.#get(
          "INSERT INTO leases (ttl_ms, expires_at_ms) VALUES (?, ?) RETURNING id",
          ttlMs,
          nowMs + ttlMs,
        );
        if (row === undefined) throw corrupt("id", undefined);
        return { id: integerOf(row, "id"), ttlMs };
      });
    });
  }

  /** @throws {FencedError} when the lease already expired or was revoked. */
  renewLease(lease: Lease): Promise<void> {
    return this.#run(`renew lease ${lease.id}`, () => {
      const nowMs = this.#clock.nowMs();
      const changes = this.#change(
        "UPDATE leases SET expires_at_ms = ? + ttl_ms WHERE id = ? AND expires_at_ms > ?",
        nowMs,
        lease.id,
        nowMs,
      );
      if (changes !== 1) {
        throw new FencedError(`Cannot renew lease ${lease.id}: it expired or was revoked`);
      }
    });
  }

  /** Revokes a lease and releases the locks and peer records bound to it. */
  revokeLease(lease: Lease): Promise<void> {
    return this.#run(`revoke lease ${lease.id}`, () => {
      this.#write(() => {
        this.#change("DELETE FROM leases WHERE id = ?", lease.id);
        this.#change("DELETE FROM peers WHERE lease_id = ?", lease.id);
        this.#change(
          "UPDATE volumes SET lock_owner = NULL, lock_lease_id = NULL WHERE lock_lease_id = ?",
          lease.id,
        );
      });
    });
  }

  /**
   * @throws {VolumeNotFoundError}
   * @throws {VolumeInUseError} when a live lease holds it (even `lease` itself).
   * @throws {FencedError} when `lease` expired.
   */
  lockVolume(volumeId: number, lease: Lease): Promise<LockToken> {
    return this.#run(`lock volume id ${volumeId}`, () => {
      return this.#write(() => {
        const row = this.#volumeRow(volumeId, "lock volume");
        const name = textOf(row, "name");
        if (!this.#leaseAlive(lease.id)) {
          throw new FencedError(`Cannot lock volume "${name}": lease ${lease.id} expired`);
        }
        if (this.#lockHeld(row)) {
          throw new VolumeInUseError(
            `Cannot lock volume "${name}": it is in use by ${textOf(row, "lock_owner")}`,
          );
        }
        const fence = integerOf(row, "lock_fence") + 1;
        this.#change(
          "UPDATE volumes SET lock_owner = ?, lock_lease_id = ?, lock_fence = ? WHERE id = ?",
          this.uuid,
          lease.id,
          fence,
          volumeId,
        );
        return { volumeId, owner: this.uuid, leaseId: lease.id, fence };
      });
    });
  }

  /** Releases the lock if `lock` still holds it; does nothing otherwise. */
  unlockVolume(lock: LockToken): Promise<void> {
    return this.#run(`unlock volume id ${lock.volumeId}`, () => {
      this.#change(
        `UPDATE volumes SET lock_owner = NULL, lock_lease_id = NULL
         WHERE id = ? AND lock_owner = ? AND lock_lease_id = ? AND lock_fence = ?`,
        lock.volumeId,
        lock.owner,
        lock.leaseId,
        lock.fence,
      );
    });
  }

  /**
   * `in-use` while a live lease holds the lock, else `free`.
   * @throws {VolumeNotFoundError}
   */
  lockStatus(volumeId: number): Promise<LockStatus> {
    return this.#run(`read the lock of volume id ${volumeId}`, () => {
      checkVolumeId(volumeId);
      const row = this.#get(
        `SELECT EXISTS (
           SELECT 1 FROM leases WHERE id = volumes.lock_lease_id AND expires_at_ms > ?
         ) AND lock_owner IS NOT NULL AS held
         FROM volumes WHERE id = ?`,
        this.#clock.nowMs(),
        volumeId,
      );
      if (row === undefined) {
        throw new VolumeNotFoundError(`Cannot read the lock: volume id ${volumeId} does not exist`);
      }
      return integerOf(row, "held") === 0 ? "free" : "in-use";
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
    return this.#run(`save snapshot "${name}"`, () => {
      checkName("snapshot", name);
      return this.#write(() => {
        const row = this.#volumeRow(volumeId, `save snapshot "${name}"`);
        const existing = this.#get(
          "SELECT 1 FROM snapshots WHERE volume_id = ? AND name = ?",
          volumeId,
          name,
        );
        if (existing !== undefined) {
          throw new AlreadyExistsError(
            `Cannot save snapshot "${name}" of volume "${textOf(row, "name")}": it already exists`,
          );
        }
        const snapshot: SnapshotInfo = {
          name,
          createdMs: this.#clock.nowMs(),
          inode: new INodeRef(volumeId, integerOf(row, "current_inode")),
        };
        this.#change(
          "INSERT INTO snapshots (volume_id, name, created_ms, inode) VALUES (?, ?, ?, ?)",
          volumeId,
          name,
          snapshot.createdMs,
          snapshot.inode.inode,
        );
        return snapshot;
      });
    });
  }

  /** @throws {VolumeNotFoundError} */
  listSnapshots(volumeId: number): Promise<SnapshotInfo[]> {
    return this.#run(`list snapshots of volume id ${volumeId}`, () => {
      return this.#write(() => {
        this.#volumeRow(volumeId, "list snapshots");
        const snapshots = this.#all("SELECT * FROM snapshots WHERE volume_id = ?", volumeId)
          .map((row): SnapshotInfo => ({
            name: textOf(row, "name"),
            createdMs: integerOf(row, "created_ms"),
            inode: new INodeRef(volumeId, integerOf(row, "inode")),
          }));
        snapshots.sort((left, right) => compareStrings(left.name, right.name));
        return snapshots;
      });
    });
  }

  /**
   * @throws {VolumeNotFoundError}
   * @throws {SnapshotNotFoundError}
   */
  deleteSnapshot(volumeId: number, name: string): Promise<void> {
    return this.#run(`delete snapshot "${name}"`, () => {
      this.#write(() => {
        const row = this.#volumeRow(volumeId, `delete snapshot "${name}"`);
        const changes = this.#change(
          "DELETE FROM snapshots WHERE volume_id = ? AND name = ?",
          volumeId,
          name,
        );
        if (changes === 0) {
          throw new SnapshotNotFoundError(
            `Cannot delete snapshot "${name}" of volume "${
              textOf(row, "name")
            }": it does not exist`,
          );
        }
      });
    });
  }

  /**
   * Registers or refreshes `peer` under `lease`, with `lastSeenMs` set to now.
   * @throws {FencedError} when `lease` expired.
   */
  registerPeer(lease: Lease, peer: PeerRecord): Promise<void> {
    return this.#run(`register peer ${peer.uuid}`, () => {
      checkPeer(peer);
      this.#write(() => {
        if (!this.#leaseAlive(lease.id)) {
          throw new FencedError(`Cannot register peer ${peer.uuid}: lease ${lease.id} expired`);
        }
        this.#change(
          `INSERT OR REPLACE INTO peers (uuid, lease_id, address, last_seen_ms, total_blocks,
             used_blocks, rebalancing, last_rebalance_finish_ms, last_rebalance_blocks,
             protocol_version)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          peer.uuid,
          lease.id,
          peer.address,
          this.#clock.nowMs(),
          peer.totalBlocks,
          peer.usedBlocks,
          peer.rebalancing ? 1 : 0,
          peer.lastRebalanceFinishMs,
          peer.lastRebalanceBlocks,
          peer.protocolVersion,
        );
      });
    });
  }

  /** Peers whose leases are alive, by uuid. */
  listPeers(): Promise<PeerRecord[]> {
    return this.#run("list peers", () => {
      const peers = this.#all(
        `SELECT peers.* FROM peers JOIN leases ON leases.id = peers.lease_id
         WHERE leases.expires_at_ms > ?`,
        this.#clock.nowMs(),
      ).map(peerOf);
      peers.sort((left, right) => compareStrings(left.uuid, right.uuid));
      return peers;
    });
  }

  #ringRow(): Row | undefined {
    return this.#get("SELECT version, bytes FROM ring WHERE singleton = 1");
  }

  /** @throws {NotInitializedError} */
  getRing(): Promise<RingRecord> {
    return this.#run("read the ring", () => {
      const row = this.#ringRow();
      if (row === undefined) {
        throw new NotInitializedError("Cannot read the ring: the metadata is not initialized");
      }
      return { version: integerOf(row, "version"), bytes: bytesOf(row, "bytes") };
    });
  }

  /**
   * Replaces the ring, compare-and-swap on its version, and wakes this
   * instance's watchers at once (other processes' watchers poll).
   *
   * @throws {NotInitializedError}
   * @throws {ConflictError} when `ring.version` is not the current version plus one.
   */
  setRing(ring: RingRecord): Promise<void> {
    return this.#run(`set ring version ${ring.version}`, () => {
      checkRing(ring);
      this.#write(() => {
        const row = this.#ringRow();
        if (row === undefined) {
          throw new NotInitializedError(
            `Cannot set ring version ${ring.version}: the metadata is not initialized`,
          );
        }
        const current = integerOf(row, "version");
        if (ring.version !== current + 1) {
          throw new ConflictError(
            `Cannot set ring version ${ring.version}: the current version is ` +
              `${current}, expected version ${current + 1}`,
          );
        }
        this.#change(
          "UPDATE ring SET version = ?, bytes = ? WHERE singleton = 1",
          ring.version,
          ring.bytes,
        );
      });
      for (const watcher of this.#watchers) queueMicrotask(() => this.#poll(watcher));
    });
  }

  /** Delivers the stored ring to `watcher` if it is newer than the last one it saw. */
  #poll(watcher: RingWatcher): void {
    if (!watcher.active || this.#closed) return;
    let ring: RingRecord | undefined;
    try {
      const row = this.#ringRow();
      if (row !== undefined && integerOf(row, "version") > watcher.lastVersion) {
        ring = { version: integerOf(row, "version"), bytes: bytesOf(row, "bytes") };
      }
    } catch {
      // A busy or unreadable database: the next poll tries again.
      return;
    }
    if (ring === undefined) return;
    watcher.lastVersion = ring.version;
    watcher.callback(ring);
  }

  /**
   * Calls `callback` with each newer ring, polling every
   * {@linkcode RING_POLL_INTERVAL_MS} of the clock. When several versions
   * are set between two polls, only the newest is delivered.
   */
  watchRing(callback: (ring: RingRecord) => void): () => void {
    if (this.#closed) throw new ClosedError(closedMessage(this, "watch the ring"));
    const row = this.#ringRow();
    const watcher: RingWatcher = {
      active: true,
      lastVersion: row === undefined ? 0 : integerOf(row, "version"),
      timerId: 0,
      callback,
    };
    const tick = () => {
      if (!watcher.active) return;
      watcher.timerId = this.#clock.setTimer(RING_POLL_INTERVAL_MS, tick);
      this.#poll(watcher);
    };
    watcher.timerId = this.#clock.setTimer(RING_POLL_INTERVAL_MS, tick);
    this.#watchers.add(watcher);
    return () => this.#stopWatcher(watcher);
  }

  #stopWatcher(watcher: RingWatcher): void {
    watcher.active = false;
    this.#clock.clearTimer(watcher.timerId);
    this.#watchers.delete(watcher);
  }

  /** Stops the watchers and closes the database; later calls throw {@linkcode ClosedError}. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const watcher of [...this.#watchers]) this.#stopWatcher(watcher);
    this.#statements.clear();
    try {
      this.#db.close();
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }
}
