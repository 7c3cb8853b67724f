/**
 * A {@linkcode MetadataService} on etcd v3: the metadata service of a Torus
 * cluster, shared by every torusd, torusctl and torusblk that points at the
 * same etcd and key prefix. Keys and values follow the original's layout
 * (see `_etcd_keys.ts`), with every prefix ending in `/`.
 *
 * Atomicity: every method is one etcd transaction, or a read followed by one
 * compare-and-swap transaction retried (at most {@linkcode ETCD_CAS_ATTEMPTS_MAX}
 * times) when another client changed the key in between. Within one
 * instance, increments of the same counter queue behind each other, so only
 * other processes compete.
 *
 * Leases are etcd leases, so etcd (not a client's clock) decides when one
 * expires. Their time to live is whole seconds: a ttl in milliseconds rounds
 * up, etcd may raise it to its minimum (1.5 election timeouts, so 2 s with
 * etcd's defaults), and {@linkcode Lease.ttlMs} reports what etcd granted.
 * Lease ids are revisions of a put to `meta/leaseminter`, so they are unique
 * and never reused, even across clusters on one etcd.
 *
 * Fencing (the original's issue #230): a volume lock is the key
 * `volumemeta/<hex>/blocklock`, holding the owner's uuid and bound to the
 * owner's lease, so etcd deletes it when the lease expires or is revoked. A
 * {@linkcode LockToken}'s fence is the key's create revision: every
 * acquisition gets a new, larger one. `commitINode` is one transaction that
 * writes the current INode only if the lock key still holds the token's
 * owner, create revision and lease. A writer whose lease lapsed can never
 * commit: its lock key is gone, or belongs to a later acquisition.
 *
 * The injected clock stamps snapshots and peer registrations; network
 * deadlines use the real clock.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import {
  castGrpcError,
  ClientClosedError,
  type Etcd3,
  EtcdLeaseInvalidError,
  type ICompare,
  type IKeyValue,
  type IRequestOp,
  type ITxnRequest,
  type ITxnResponse,
} from "etcd3";
import { AssertionError } from "../assert.ts";
import type { Clock } from "../clock.ts";
import { INodeRef } from "../core/block_ref.ts";
import {
  AlreadyExistsError,
  ClosedError,
  ConflictError,
  FencedError,
  MetadataUnavailableError,
  NotInitializedError,
  SnapshotNotFoundError,
  TorusError,
  VolumeInUseError,
  VolumeNotFoundError,
} from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
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
import {
  connectEtcd,
  ETCD_REQUEST_TIMEOUT_MS,
  type EtcdTlsFiles,
  isConnectionError,
  NETWORK_CLOCK,
} from "./_etcd_client.ts";
import {
  decodeINodeRef,
  decodePeer,
  decodeSnapshot,
  decodeU64,
  decodeVolume,
  encodeINodeRef,
  encodePeer,
  encodeSnapshot,
  encodeU64,
  encodeVolume,
  ringVersionOf,
} from "./_etcd_codec.ts";
import { ETCD_KEY_PREFIX_DEFAULT, EtcdKeys, prefixRangeEnd } from "./_etcd_keys.ts";
import { revisionOf, RingWatch } from "./_etcd_ring_watch.ts";
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

export { ETCD_KEY_PREFIX_DEFAULT } from "./_etcd_keys.ts";
export {
  ETCD_ENDPOINT_QUARANTINE_MS,
  ETCD_REQUEST_TIMEOUT_MS,
  ETCD_WATCH_RECONNECT_DELAY_MS_MAX,
  type EtcdTlsFiles,
} from "./_etcd_client.ts";

/**
 * Most compare-and-swap attempts of one operation before it gives up with
 * {@linkcode ConflictError}. Increments within a process queue, so losing 64
 * times in a row takes dozens of other processes hammering one key.
 */
export const ETCD_CAS_ATTEMPTS_MAX = 64;
/** etcd lease TTLs are whole seconds: the granularity of {@linkcode Lease.ttlMs}. */
export const ETCD_LEASE_TTL_GRANULARITY_MS = 1_000;
/**
 * Most lease ids tried before giving up: an id is refused only when another
 * program chose the same one by hand.
 */
export const ETCD_LEASE_GRANT_ATTEMPTS_MAX = 8;
/** Longest {@linkcode EtcdMetadata.syncRingWatchers} waits for the watch to catch up, in ms. */
export const ETCD_RING_SYNC_TIMEOUT_MS = 10_000;
/** Longest `close()` waits for etcd to confirm the ring watch's cancellation, in ms. */
export const ETCD_CLOSE_TIMEOUT_MS = 2_000;

/** Options of {@linkcode EtcdMetadata.open}. */
export interface EtcdMetadataOptions {
  /**
   * etcd client endpoints: `host:port`, `http://host:port` or
   * `https://host:port`. With several, requests fail over between them.
   */
  endpoints: readonly string[];
  /** TLS files; when set, endpoints without a scheme use https. */
  tls?: EtcdTlsFiles;
  /** Time source of snapshot times and peer registrations. */
  clock: Clock;
  /**
   * This process's identity (owner of its locks).
   * @default {crypto.randomUUID()}
   */
  uuid?: string;
  /**
   * Prefix of every key; a trailing `/` is added when missing.
   * @default {ETCD_KEY_PREFIX_DEFAULT}
   */
  keyPrefix?: string;
  /**
   * Deadline of each request, in milliseconds.
   * @default {ETCD_REQUEST_TIMEOUT_MS}
   */
  requestTimeoutMs?: number;
  /**
   * Where watch disconnections and unreadable entries are reported.
   * @default {silentLogger}
   */
  logger?: Logger;
}

function bytes(value: Uint8Array | string): Buffer {
  return typeof value === "string"
    ? Buffer.from(value, "utf8")
    : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** Request operations of a transaction. */
const op = {
  get: (key: Buffer): IRequestOp => ({ request_range: { key } }),
  getPrefix: (key: Buffer): IRequestOp => ({
    request_range: { key, range_end: prefixRangeEnd(key) },
  }),
  put: (key: Buffer, value: Uint8Array | string, leaseId?: number): IRequestOp => ({
    request_put: {
      key,
      value: bytes(value),
      ...(leaseId === undefined ? {} : { lease: String(leaseId) }),
    },
  }),
  delete: (key: Buffer): IRequestOp => ({ request_delete_range: { key } }),
  deletePrefix: (key: Buffer): IRequestOp => ({
    request_delete_range: { key, range_end: prefixRangeEnd(key) },
  }),
};

/** Comparisons of a transaction. */
const when = {
  absent: (key: Buffer): ICompare => ({
    key,
    target: "Create",
    result: "Equal",
    create_revision: "0",
  }),
  present: (key: Buffer): ICompare => ({
    key,
    target: "Create",
    result: "Greater",
    create_revision: "0",
  }),
  createdAt: (key: Buffer, revision: number): ICompare => ({
    key,
    target: "Create",
    result: "Equal",
    create_revision: String(revision),
  }),
  modifiedAt: (key: Buffer, revision: number): ICompare => ({
    key,
    target: "Mod",
    result: "Equal",
    mod_revision: String(revision),
  }),
  valueIs: (key: Buffer, value: string): ICompare => ({
    key,
    target: "Value",
    result: "Equal",
    value: bytes(value),
  }),
  leaseIs: (key: Buffer, leaseId: number): ICompare => ({
    key,
    target: "Lease",
    result: "Equal",
    lease: String(leaseId),
  }),
};

/** The key-values the `index`th operation of a transaction read. */
function rangeOf(response: ITxnResponse, index: number): IKeyValue[] {
  const result = response.responses[index]?.response_range;
  if (result === undefined) {
    throw new AssertionError(`etcd transaction response ${index} is not a range`);
  }
  return result.kvs;
}

/** The lock conditions `token` proves: same owner, same acquisition, same lease. */
function lockHeldBy(key: Buffer, token: LockToken): ICompare[] {
  return [
    when.valueIs(key, token.owner),
    when.createdAt(key, token.fence),
    when.leaseIs(key, token.leaseId),
  ];
}

/** Where etcd is, for messages. */
function whereEtcd(endpoints: readonly string[]): string {
  return `etcd at ${endpoints.join(", ")}`;
}

/** Turns what etcd3 throws into the errors of `lib/errors.ts`; passes ours through. */
function translateError(operation: string, endpoints: readonly string[], error: unknown): unknown {
  if (
    error instanceof TorusError || error instanceof RangeError || error instanceof TypeError ||
    error instanceof SyntaxError || error instanceof AssertionError
  ) {
    return error;
  }
  if (isConnectionError(error)) {
    return new MetadataUnavailableError(
      `Cannot ${operation}: ${whereEtcd(endpoints)} is unreachable: ${describeError(error)}`,
      { cause: error },
    );
  }
  return new TorusError(
    `Cannot ${operation}: ${whereEtcd(endpoints)} refused it: ${describeError(error)}`,
    { cause: error },
  );
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0]!;
}

/**
 * What went wrong, in one line: grpc's "14 UNAVAILABLE: No connection
 * established. Last error: X (time). Resolution note: " becomes "X".
 */
function describeError(error: unknown): string {
  const line = firstLine(error);
  const cause = /Last error: (?<cause>.*?)(?: \(\d{4}-[^)]*\))?\.?(?: Resolution note:.*)?$/
    .exec(line)?.groups?.cause;
  return cause ?? line.replace(/\.? ?Resolution note:.*$/, "");
}

/** True for etcd's "lease already exists" (an id another program chose). */
function isLeaseTaken(error: unknown): boolean {
  return error instanceof Error && error.message.includes("lease already exists");
}

/**
 * A {@linkcode MetadataService} on etcd.
 *
 * @example Usage
 * ```ts ignore
 * import { SystemClock } from "../clock.ts";
 * import { EtcdMetadata } from "./etcd_metadata.ts";
 * const metadata = await EtcdMetadata.open({
 *   endpoints: ["127.0.0.1:2379"],
 *   clock: new SystemClock(),
 * });
 * try {
 *   console.log(await metadata.listVolumes());
 * } finally {
 *   await metadata.close();
 * }
 * ```
 */
export class EtcdMetadata implements MetadataService {
  /** Always `etcd`. */
  readonly kind = "etcd";
  /** This process's identity. */
  readonly uuid: string;
  /** The endpoints dialled, normalized (`http://host:port`). */
  readonly endpoints: readonly string[];
  /** The key prefix, ending in `/`. */
  readonly keyPrefix: string;
  #client: Etcd3;
  #keys: EtcdKeys;
  #clock: Clock;
  #logger: Logger;
  #requestTimeoutMs: number;
  #closed = false;
  /** Tail of the queue of each serialized key. */
  #queues = new Map<string, Promise<void>>();
  #ringWatch: RingWatch;

  private constructor(
    client: Etcd3,
    endpoints: string[],
    keys: EtcdKeys,
    options: EtcdMetadataOptions,
  ) {
    this.#client = client;
    this.endpoints = endpoints;
    this.#keys = keys;
    this.keyPrefix = keys.prefix;
    this.#clock = options.clock;
    this.uuid = options.uuid ?? crypto.randomUUID();
    this.#logger = options.logger ?? silentLogger;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? ETCD_REQUEST_TIMEOUT_MS;
    this.#ringWatch = new RingWatch({
      client,
      key: keys.ring,
      logger: this.#logger,
      where: whereEtcd(endpoints),
    });
  }

  /**
   * Connects to etcd and checks that it answers.
   *
   * @throws {MetadataUnavailableError} naming the endpoints when no endpoint answers.
   * @throws {RangeError} on bad endpoints, key prefix or TLS settings.
   * @throws {Deno.errors.NotFound} when a TLS file is missing.
   */
  static async open(options: EtcdMetadataOptions): Promise<EtcdMetadata> {
    const keys = new EtcdKeys(options.keyPrefix ?? ETCD_KEY_PREFIX_DEFAULT);
    const { client, endpoints } = await connectEtcd(options);
    const metadata = new EtcdMetadata(client, endpoints, keys, options);
    try {
      await metadata.#call("connect", () => client.kv.range({ key: keys.globalMetadata }));
      return metadata;
    } catch (error) {
      await metadata.close();
      throw error;
    }
  }

  /** Where etcd is, for messages. */
  #where(): string {
    return whereEtcd(this.endpoints);
  }

  /** Runs `body` unless closed, translating its errors. */
  async #call<T>(operation: string, body: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new ClosedError(closedMessage(this, operation));
    try {
      return await body();
    } catch (error) {
      if (this.#closed || error instanceof ClientClosedError) {
        throw new ClosedError(closedMessage(this, operation), { cause: error });
      }
      throw translateError(operation, this.endpoints, error);
    }
  }

  /** Runs `body` after every earlier `body` of the same `key` settled. */
  #serialized<T>(key: Buffer, body: () => Promise<T>): Promise<T> {
    const name = key.toString("latin1");
    const previous = this.#queues.get(name) ?? Promise.resolve();
    const result = previous.then(body);
    const tail = result.then(() => {}, () => {});
    this.#queues.set(name, tail);
    void tail.then(() => {
      if (this.#queues.get(name) === tail) this.#queues.delete(name);
    });
    return result;
  }

  #txn(request: ITxnRequest): Promise<ITxnResponse> {
    return this.#client.kv.txn(request);
  }

  /** Reads several keys or prefixes atomically (one read-only transaction). */
  async #read<T extends IRequestOp[]>(
    ...operations: T
  ): Promise<{ [K in keyof T]: IKeyValue[] }> {
    const response = await this.#txn({ success: operations });
    return operations.map((_, index) => rangeOf(response, index)) as {
      [K in keyof T]: IKeyValue[];
    };
  }

  /** The volume's registry entry, or VolumeNotFoundError. */
  async #volume(volumeId: number, operation: string): Promise<VolumeInfo> {
    checkVolumeId(volumeId);
    const [[kv]] = await this.#read(op.get(this.#keys.volume(volumeId)));
    if (kv === undefined) {
      throw new VolumeNotFoundError(`Cannot ${operation}: volume id ${volumeId} does not exist`);
    }
    return decodeVolume(kv.value);
  }

  /**
   * Adds one to the u64 counter at `key` with compare-and-swap, and returns
   * the new value.
   */
  #increment(key: Buffer, operation: string, missing: () => Error): Promise<number> {
    return this.#serialized(key, async () => {
      let [[current]] = await this.#read(op.get(key));
      for (let attempt = 1; attempt <= ETCD_CAS_ATTEMPTS_MAX; attempt++) {
        if (current === undefined) throw missing();
        const next = decodeU64(`the counter ${key}`, current.value) + 1;
        const response = await this.#txn({
          compare: [when.modifiedAt(key, revisionOf(current.mod_revision))],
          success: [op.put(key, encodeU64(next))],
          failure: [op.get(key)],
        });
        if (response.succeeded) return next;
        [current] = rangeOf(response, 0);
      }
      throw new ConflictError(
        `Cannot ${operation}: lost ${ETCD_CAS_ATTEMPTS_MAX} compare-and-swap races in a row`,
      );
    });
  }

  /**
   * Reads `meta/globalmetadata`.
   * @throws {NotInitializedError} before `initialize`.
   */
  globalMetadata(): Promise<GlobalMetadata> {
    return this.#call("read global metadata", async () => {
      const [[kv]] = await this.#read(op.get(this.#keys.globalMetadata));
      if (kv === undefined) {
        throw new NotInitializedError(
          "Cannot read global metadata: the metadata is not initialized",
        );
      }
      return decodeGlobalMetadata(kv.value.toString("utf8"));
    });
  }

  /**
   * Writes global metadata, the volume id counter (0) and the first ring in
   * one transaction.
   *
   * @throws {AlreadyExistsError} when already initialized.
   * @throws {RangeError} on bad metadata, or a ring whose bytes encode another version.
   * @throws {SyntaxError} when the ring bytes are not a `models.Ring`.
   */
  initialize(metadata: GlobalMetadata, ring: RingRecord): Promise<void> {
    return this.#call("initialize metadata", async () => {
      checkGlobalMetadata(metadata);
      checkRingRecord(ring);
      const keys = this.#keys;
      const response = await this.#txn({
        compare: [when.absent(keys.globalMetadata)],
        success: [
          op.put(keys.globalMetadata, encodeGlobalMetadata(metadata)),
          op.put(keys.volumeMinter, encodeU64(0)),
          op.put(keys.ring, ring.bytes),
        ],
      });
      if (!response.succeeded) {
        throw new AlreadyExistsError("Cannot initialize metadata: it is already initialized");
      }
      this.#ringWatch.observe(ring.version, revisionOf(response.header.revision), "write");
    });
  }

  /**
   * Mints the next volume id and writes the volume's keys in one
   * transaction; a taken name consumes no id.
   *
   * @throws {NotInitializedError} before `initialize`.
   * @throws {AlreadyExistsError} when the name is taken.
   * @throws {RangeError} on a bad name or size.
   */
  createVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    return this.#call(`create volume "${name}"`, () => {
      checkName("volume", name);
      checkVolumeSizeBytes(name, sizeBytes);
      const keys = this.#keys;
      return this.#serialized(keys.volumeMinter, async () => {
        for (let attempt = 1; attempt <= ETCD_CAS_ATTEMPTS_MAX; attempt++) {
          const [[global], [minter], [taken]] = await this.#read(
            op.get(keys.globalMetadata),
            op.get(keys.volumeMinter),
            op.get(keys.volumeName(name)),
          );
          if (global === undefined || minter === undefined) {
            throw new NotInitializedError(
              `Cannot create volume "${name}": the metadata is not initialized`,
            );
          }
          if (taken !== undefined) {
            throw new AlreadyExistsError(`Cannot create volume "${name}": it already exists`);
          }
          const id = decodeU64("the volume id counter", minter.value) + 1;
          checkNewVolumeId(name, id);
          const info: VolumeInfo = { name, id, type: "block", sizeBytes };
          const response = await this.#txn({
            compare: [
              when.modifiedAt(keys.volumeMinter, revisionOf(minter.mod_revision)),
              when.absent(keys.volumeName(name)),
            ],
            success: [
              op.put(keys.volumeMinter, encodeU64(id)),
              op.put(keys.volumeName(name), encodeU64(id)),
              op.put(keys.volume(id), encodeVolume(info)),
              op.put(keys.inodeCounter(id), encodeU64(1)),
              op.put(keys.currentINode(id), encodeINodeRef(new INodeRef(id, 1))),
            ],
          });
          if (response.succeeded) return info;
        }
        throw new ConflictError(
          `Cannot create volume "${name}": lost ${ETCD_CAS_ATTEMPTS_MAX} compare-and-swap ` +
            `races in a row`,
        );
      });
    });
  }

  /**
   * Reads `volumes/<name>`, then the registry entry of that id.
   * @throws {VolumeNotFoundError}
   */
  getVolume(name: string): Promise<VolumeInfo> {
    const operation = `get volume "${name}"`;
    return this.#call(operation, async () => {
      const [[idKv]] = await this.#read(op.get(this.#keys.volumeName(name)));
      const missing = () => new VolumeNotFoundError(`Cannot ${operation}: it does not exist`);
      if (idKv === undefined) throw missing();
      const id = decodeU64(`the id of volume "${name}"`, idKv.value);
      const [[kv]] = await this.#read(op.get(this.#keys.volume(id)));
      if (kv === undefined) throw missing();
      return decodeVolume(kv.value);
    });
  }

  /** Every volume, by name. */
  listVolumes(): Promise<VolumeInfo[]> {
    return this.#call("list volumes", async () => {
      const [kvs] = await this.#read(op.getPrefix(this.#keys.volumes));
      const volumes = kvs.map((kv) => decodeVolume(kv.value));
      volumes.sort((left, right) => compareStrings(left.name, right.name));
      return volumes;
    });
  }

  /** The volume id counter: the largest id ever handed out (0 before any). */
  volumeIdHighwater(): Promise<number> {
    return this.#call("read the volume id highwater", async () => {
      const [[kv]] = await this.#read(op.get(this.#keys.volumeMinter));
      return kv === undefined ? 0 : decodeU64("the volume id counter", kv.value);
    });
  }

  /**
   * Grows the volume's registry entry (`volumeid/<hex>`) to `sizeBytes`: reads
   * `volumes/<name>`, then the entry of that id, and puts the new entry in
   * one transaction that requires both keys unchanged since they were read
   * (a concurrent delete or resize makes it retry, so a deleted volume is
   * never written back). Its current size is a no-op. Nothing under
   * `volumemeta/<hex>/` changes, and a held lock does not prevent it.
   *
   * @throws {VolumeNotFoundError}
   * @throws {RangeError} on a bad size, or one smaller than the volume's.
   */
  resizeVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    const operation = `resize volume "${name}"`;
    return this.#call(operation, async () => {
      checkVolumeSizeBytes(name, sizeBytes, "resize");
      const keys = this.#keys;
      const missing = () => new VolumeNotFoundError(`Cannot ${operation}: it does not exist`);
      for (let attempt = 1; attempt <= ETCD_CAS_ATTEMPTS_MAX; attempt++) {
        const [[idKv]] = await this.#read(op.get(keys.volumeName(name)));
        if (idKv === undefined) throw missing();
        const id = decodeU64(`the id of volume "${name}"`, idKv.value);
        const [[kv]] = await this.#read(op.get(keys.volume(id)));
        if (kv === undefined) throw missing();
        const volume = decodeVolume(kv.value);
        checkNotShrinking(volume, sizeBytes);
        if (sizeBytes === volume.sizeBytes) return volume;
        const resized: VolumeInfo = { ...volume, sizeBytes };
        const response = await this.#txn({
          compare: [
            when.modifiedAt(keys.volumeName(name), revisionOf(idKv.mod_revision)),
            when.modifiedAt(keys.volume(id), revisionOf(kv.mod_revision)),
          ],
          success: [op.put(keys.volume(id), encodeVolume(resized))],
        });
        if (response.succeeded) return resized;
      }
      throw new ConflictError(
        `Cannot ${operation}: lost ${ETCD_CAS_ATTEMPTS_MAX} compare-and-swap races in a row`,
      );
    });
  }

  /**
   * Deletes the volume's name, registry entry and everything under
   * `volumemeta/<hex>/`, in one transaction that requires the lock key to be
   * absent. Its id is never reused.
   *
   * @throws {VolumeNotFoundError}
   * @throws {VolumeInUseError} while a live lease holds its lock.
   */
  deleteVolume(name: string): Promise<void> {
    const operation = `delete volume "${name}"`;
    return this.#call(operation, async () => {
      const keys = this.#keys;
      for (let attempt = 1; attempt <= ETCD_CAS_ATTEMPTS_MAX; attempt++) {
        const [[idKv]] = await this.#read(op.get(keys.volumeName(name)));
        if (idKv === undefined) {
          throw new VolumeNotFoundError(`Cannot ${operation}: it does not exist`);
        }
        const id = decodeU64(`the id of volume "${name}"`, idKv.value);
        const response = await this.#txn({
          compare: [
            when.modifiedAt(keys.volumeName(name), revisionOf(idKv.mod_revision)),
            when.absent(keys.lock(id)),
          ],
          success: [
            op.delete(keys.volumeName(name)),
            op.delete(keys.volume(id)),
            op.deletePrefix(keys.volumeMeta(id)),
          ],
          failure: [op.get(keys.lock(id))],
        });
        if (response.succeeded) return;
        const [lock] = rangeOf(response, 0);
        if (lock !== undefined) {
          throw new VolumeInUseError(
            `Cannot ${operation}: it is in use by ${lock.value.toString("utf8")}`,
          );
        }
      }
      throw new ConflictError(
        `Cannot ${operation}: lost ${ETCD_CAS_ATTEMPTS_MAX} compare-and-swap races in a row`,
      );
    });
  }

  /**
   * Increments the volume's INode counter (compare-and-swap) and returns it.
   * @throws {VolumeNotFoundError}
   */
  nextINode(volumeId: number): Promise<number> {
    const operation = `allocate an INode of volume id ${volumeId}`;
    return this.#call(operation, () => {
      checkVolumeId(volumeId);
      return this.#increment(
        this.#keys.inodeCounter(volumeId),
        operation,
        () =>
          new VolumeNotFoundError(
            `Cannot allocate an INode: volume id ${volumeId} does not exist`,
          ),
      );
    });
  }

  /**
   * Reads the volume's INode counter.
   * @throws {VolumeNotFoundError}
   */
  inodeCounter(volumeId: number): Promise<number> {
    return this.#call(`read the INode counter of volume id ${volumeId}`, async () => {
      checkVolumeId(volumeId);
      const [[kv]] = await this.#read(op.get(this.#keys.inodeCounter(volumeId)));
      if (kv === undefined) {
        throw new VolumeNotFoundError(
          `Cannot read the INode counter: volume id ${volumeId} does not exist`,
        );
      }
      return decodeU64(`the INode counter of volume id ${volumeId}`, kv.value);
    });
  }

  /**
   * Reads the volume's current INode (`blockinode`).
   * @throws {VolumeNotFoundError}
   */
  currentINode(volumeId: number): Promise<INodeRef> {
    return this.#call(`read the current INode of volume id ${volumeId}`, async () => {
      checkVolumeId(volumeId);
      const [[kv]] = await this.#read(op.get(this.#keys.currentINode(volumeId)));
      if (kv === undefined) {
        throw new VolumeNotFoundError(
          `Cannot read the current INode: volume id ${volumeId} does not exist`,
        );
      }
      return decodeINodeRef("the current INode", volumeId, kv.value);
    });
  }

  /**
   * Commits `inode` in one transaction that writes it only while the lock key
   * holds `lock`'s owner, create revision (fence) and lease.
   *
   * @throws {FencedError} when `lock` no longer holds the volume's lock: it
   * was released or taken over, or its lease expired (even if nobody else
   * took the lock since).
   * @throws {RangeError} when `inode` belongs to another volume.
   */
  commitINode(lock: LockToken, inode: INodeRef): Promise<void> {
    return this.#call(`commit INode ${inode.inode} of volume id ${lock.volumeId}`, async () => {
      if (inode.volume !== lock.volumeId) {
        throw new RangeError(
          `Cannot commit INode (${inode}) under the lock of volume id ${lock.volumeId}`,
        );
      }
      checkVolumeId(lock.volumeId);
      const response = await this.#txn({
        compare: lockHeldBy(this.#keys.lock(lock.volumeId), lock),
        success: [op.put(this.#keys.currentINode(lock.volumeId), encodeINodeRef(inode))],
      });
      if (!response.succeeded) {
        throw new FencedError(
          `Cannot commit INode ${inode.inode} of volume id ${lock.volumeId}: ` +
            `lock fence ${lock.fence} of ${lock.owner} no longer holds the volume`,
        );
      }
    });
  }

  /**
   * Grants an etcd lease of `ttlMs` rounded up to whole seconds (etcd may
   * raise it to its minimum); the lease's `ttlMs` is what etcd granted.
   *
   * @throws {RangeError} on a `ttlMs` that is not a positive integer.
   */
  grantLease(ttlMs: number): Promise<Lease> {
    return this.#call("grant a lease", async () => {
      checkTtlMs(ttlMs);
      const ttlSeconds = Math.ceil(ttlMs / ETCD_LEASE_TTL_GRANULARITY_MS);
      for (let attempt = 1;; attempt++) {
        const minted = await this.#client.kv.put({
          key: this.#keys.leaseMinter,
          value: Buffer.alloc(0),
        });
        const id = revisionOf(minted.header.revision);
        try {
          const granted = await this.#client.leaseClient.leaseGrant({
            ID: String(id),
            TTL: String(ttlSeconds),
          });
          return { id, ttlMs: Number(granted.TTL) * ETCD_LEASE_TTL_GRANULARITY_MS };
        } catch (error) {
          if (!isLeaseTaken(error) || attempt >= ETCD_LEASE_GRANT_ATTEMPTS_MAX) throw error;
        }
      }
    });
  }

  /** One keep-alive round trip; resolves with the TTL etcd reports (0: no such lease). */
  async #keepAliveOnce(leaseId: number): Promise<number> {
    // A stream goes to one endpoint; a failed one is quarantined, so the next
    // attempt goes to another.
    for (let attempt = 1;; attempt++) {
      const stream = await this.#client.leaseClient.leaseKeepAlive({
        deadline: NETWORK_CLOCK.nowMs() + this.#requestTimeoutMs,
      });
      try {
        return await new Promise<number>((resolve, reject) => {
          stream.on("data", (response) => resolve(Number(response.TTL)));
          stream.on("error", reject);
          stream.on("end", () => reject(new Error("the keep-alive stream ended unanswered")));
          stream.write({ ID: String(leaseId) });
        });
      } catch (error) {
        const translated = castStreamError(error);
        if (!isConnectionError(translated) || attempt > this.endpoints.length) throw translated;
      } finally {
        stream.end();
      }
    }
  }

  /**
   * Sends one keep-alive for the lease (failing over between endpoints).
   * @throws {FencedError} when the lease already expired or was revoked.
   */
  renewLease(lease: Lease): Promise<void> {
    return this.#call(`renew lease ${lease.id}`, async () => {
      const ttlSeconds = await this.#keepAliveOnce(lease.id);
      if (!(ttlSeconds > 0)) {
        throw new FencedError(`Cannot renew lease ${lease.id}: it expired or was revoked`);
      }
    });
  }

  /** Revokes a lease; etcd deletes the locks and peer records bound to it. */
  revokeLease(lease: Lease): Promise<void> {
    return this.#call(`revoke lease ${lease.id}`, async () => {
      try {
        await this.#client.leaseClient.leaseRevoke({ ID: String(lease.id) });
      } catch (error) {
        if (!(error instanceof EtcdLeaseInvalidError)) throw error;
      }
    });
  }

  /**
   * True while etcd knows the lease: it has not been revoked, nor expired and
   * been collected. (The remaining TTL is whole seconds rounded down, so a
   * live lease may report 0; etcd reports -1 for a lease it does not know.)
   */
  async #leaseAlive(leaseId: number): Promise<boolean> {
    const response = await this.#client.leaseClient.leaseTimeToLive({ ID: String(leaseId) });
    return Number(response.TTL) >= 0;
  }

  /**
   * Creates the lock key bound to `lease`, if absent; the token's fence is
   * its create revision.
   *
   * @throws {VolumeNotFoundError}
   * @throws {VolumeInUseError} when a live lease holds it (even `lease` itself).
   * @throws {FencedError} when `lease` expired.
   */
  lockVolume(volumeId: number, lease: Lease): Promise<LockToken> {
    return this.#call(`lock volume id ${volumeId}`, async () => {
      const { name } = await this.#volume(volumeId, "lock volume");
      const keys = this.#keys;
      let response: ITxnResponse;
      try {
        response = await this.#txn({
          compare: [when.present(keys.volume(volumeId)), when.absent(keys.lock(volumeId))],
          success: [op.put(keys.lock(volumeId), this.uuid, lease.id), op.get(keys.lock(volumeId))],
          failure: [op.get(keys.volume(volumeId)), op.get(keys.lock(volumeId))],
        });
      } catch (error) {
        if (error instanceof EtcdLeaseInvalidError) {
          throw new FencedError(`Cannot lock volume "${name}": lease ${lease.id} expired`);
        }
        throw error;
      }
      if (response.succeeded) {
        const [created] = rangeOf(response, 1);
        if (created === undefined) throw new AssertionError("etcd lost a lock it just created");
        const fence = revisionOf(created.create_revision);
        return { volumeId, owner: this.uuid, leaseId: lease.id, fence };
      }
      const [[volume], [held]] = [rangeOf(response, 0), rangeOf(response, 1)];
      if (volume === undefined) {
        throw new VolumeNotFoundError(`Cannot lock volume: volume id ${volumeId} does not exist`);
      }
      if (!await this.#leaseAlive(lease.id)) {
        throw new FencedError(`Cannot lock volume "${name}": lease ${lease.id} expired`);
      }
      throw new VolumeInUseError(
        `Cannot lock volume "${name}": it is in use by ${held?.value.toString("utf8")}`,
      );
    });
  }

  /** Deletes the lock key if `lock` still holds it; does nothing otherwise. */
  unlockVolume(lock: LockToken): Promise<void> {
    return this.#call(`unlock volume id ${lock.volumeId}`, async () => {
      checkVolumeId(lock.volumeId);
      const key = this.#keys.lock(lock.volumeId);
      await this.#txn({ compare: lockHeldBy(key, lock), success: [op.delete(key)] });
    });
  }

  /**
   * `in-use` while the lock key exists (etcd deletes it with its lease), else `free`.
   * @throws {VolumeNotFoundError}
   */
  lockStatus(volumeId: number): Promise<LockStatus> {
    return this.#call(`read the lock of volume id ${volumeId}`, async () => {
      checkVolumeId(volumeId);
      const [[volume], [lock]] = await this.#read(
        op.get(this.#keys.volume(volumeId)),
        op.get(this.#keys.lock(volumeId)),
      );
      if (volume === undefined) {
        throw new VolumeNotFoundError(`Cannot read the lock: volume id ${volumeId} does not exist`);
      }
      return lock === undefined ? "free" : "in-use";
    });
  }

  /**
   * Saves the current INode under `name`, timed by the clock: one
   * transaction that writes the snapshot only if the current INode did not
   * change since it was read and the name is free.
   *
   * @throws {VolumeNotFoundError}
   * @throws {AlreadyExistsError}
   * @throws {RangeError} on a bad name.
   */
  saveSnapshot(volumeId: number, name: string): Promise<SnapshotInfo> {
    return this.#call(`save snapshot "${name}"`, async () => {
      checkName("snapshot", name);
      checkVolumeId(volumeId);
      const keys = this.#keys;
      const snapshotKey = keys.snapshot(volumeId, name);
      for (let attempt = 1; attempt <= ETCD_CAS_ATTEMPTS_MAX; attempt++) {
        const [[volume], [current], [existing]] = await this.#read(
          op.get(keys.volume(volumeId)),
          op.get(keys.currentINode(volumeId)),
          op.get(snapshotKey),
        );
        if (volume === undefined || current === undefined) {
          throw new VolumeNotFoundError(
            `Cannot save snapshot "${name}": volume id ${volumeId} does not exist`,
          );
        }
        if (existing !== undefined) {
          throw new AlreadyExistsError(
            `Cannot save snapshot "${name}" of volume "${
              decodeVolume(volume.value).name
            }": it already exists`,
          );
        }
        const snapshot: SnapshotInfo = {
          name,
          createdMs: this.#clock.nowMs(),
          inode: decodeINodeRef("the current INode", volumeId, current.value),
        };
        const response = await this.#txn({
          compare: [
            when.modifiedAt(keys.currentINode(volumeId), revisionOf(current.mod_revision)),
            when.absent(snapshotKey),
          ],
          success: [op.put(snapshotKey, encodeSnapshot(snapshot))],
        });
        if (response.succeeded) return snapshot;
      }
      throw new ConflictError(
        `Cannot save snapshot "${name}": the current INode kept changing ` +
          `(${ETCD_CAS_ATTEMPTS_MAX} attempts)`,
      );
    });
  }

  /**
   * The volume's snapshots, by name.
   * @throws {VolumeNotFoundError}
   */
  listSnapshots(volumeId: number): Promise<SnapshotInfo[]> {
    return this.#call(`list snapshots of volume id ${volumeId}`, async () => {
      checkVolumeId(volumeId);
      const [[volume], kvs] = await this.#read(
        op.get(this.#keys.volume(volumeId)),
        op.getPrefix(this.#keys.snapshots(volumeId)),
      );
      if (volume === undefined) {
        throw new VolumeNotFoundError(
          `Cannot list snapshots: volume id ${volumeId} does not exist`,
        );
      }
      const snapshots = kvs.map((kv) => decodeSnapshot(volumeId, kv.value));
      snapshots.sort((left, right) => compareStrings(left.name, right.name));
      return snapshots;
    });
  }

  /**
   * Deletes a snapshot.
   * @throws {VolumeNotFoundError}
   * @throws {SnapshotNotFoundError}
   */
  deleteSnapshot(volumeId: number, name: string): Promise<void> {
    const operation = `delete snapshot "${name}"`;
    return this.#call(operation, async () => {
      checkVolumeId(volumeId);
      const key = this.#keys.snapshot(volumeId, name);
      const response = await this.#txn({
        compare: [when.present(key)],
        success: [op.delete(key)],
        failure: [op.get(this.#keys.volume(volumeId))],
      });
      if (response.succeeded) return;
      const [volume] = rangeOf(response, 0);
      if (volume === undefined) {
        throw new VolumeNotFoundError(
          `Cannot ${operation}: volume id ${volumeId} does not exist`,
        );
      }
      throw new SnapshotNotFoundError(
        `Cannot ${operation} of volume "${decodeVolume(volume.value).name}": it does not exist`,
      );
    });
  }

  /**
   * Puts `nodes/<uuid>` bound to `lease`, with `lastSeenMs` set to now.
   * @throws {FencedError} when `lease` expired.
   */
  registerPeer(lease: Lease, peer: PeerRecord): Promise<void> {
    return this.#call(`register peer ${peer.uuid}`, async () => {
      checkPeer(peer);
      const value = encodePeer(peer, this.#clock.nowMs());
      try {
        await this.#client.kv.put({
          key: this.#keys.node(peer.uuid),
          value: bytes(value),
          lease: String(lease.id),
        });
      } catch (error) {
        if (error instanceof EtcdLeaseInvalidError) {
          throw new FencedError(`Cannot register peer ${peer.uuid}: lease ${lease.id} expired`);
        }
        throw error;
      }
    });
  }

  /** Peers whose leases are alive (etcd deletes the others' keys), by uuid. */
  listPeers(): Promise<PeerRecord[]> {
    return this.#call("list peers", async () => {
      const [kvs] = await this.#read(op.getPrefix(this.#keys.nodes));
      const peers: PeerRecord[] = [];
      for (const kv of kvs) {
        try {
          peers.push(decodePeer(kv.value));
        } catch (error) {
          // As the original: a record nobody can read is no peer.
          this.#logger.log("warn", `skipping peer record ${kv.key}: ${firstLine(error)}`);
        }
      }
      peers.sort((left, right) => compareStrings(left.uuid, right.uuid));
      return peers;
    });
  }

  /**
   * Reads the ring; its version comes from the stored `models.Ring`.
   * @throws {NotInitializedError}
   * @throws {SyntaxError} when the stored bytes are not a ring.
   */
  getRing(): Promise<RingRecord> {
    return this.#call("read the ring", async () => {
      const response = await this.#client.kv.range({ key: this.#keys.ring });
      const kv = response.kvs[0];
      if (kv === undefined) {
        throw new NotInitializedError("Cannot read the ring: the metadata is not initialized");
      }
      const ringBytes = new Uint8Array(kv.value);
      const version = ringVersionOf(ringBytes);
      this.#ringWatch.observe(version, revisionOf(response.header.revision), "read");
      return { version, bytes: ringBytes };
    });
  }

  /**
   * Replaces the ring: compare-and-swap on the ring key's modification
   * revision, after checking `ring.version` is the stored version plus one.
   *
   * @throws {NotInitializedError}
   * @throws {ConflictError} when `ring.version` is not the current version plus one.
   * @throws {RangeError} when the bytes encode another version than `ring.version`.
   * @throws {SyntaxError} when the bytes are not a `models.Ring`.
   */
  setRing(ring: RingRecord): Promise<void> {
    return this.#call(`set ring version ${ring.version}`, async () => {
      checkRingRecord(ring);
      const key = this.#keys.ring;
      for (let attempt = 1; attempt <= ETCD_CAS_ATTEMPTS_MAX; attempt++) {
        const [[kv]] = await this.#read(op.get(key));
        if (kv === undefined) {
          throw new NotInitializedError(
            `Cannot set ring version ${ring.version}: the metadata is not initialized`,
          );
        }
        const current = ringVersionOf(kv.value);
        if (ring.version !== current + 1) {
          throw new ConflictError(
            `Cannot set ring version ${ring.version}: the current version is ` +
              `${current}, expected version ${current + 1}`,
          );
        }
        const response = await this.#txn({
          compare: [when.modifiedAt(key, revisionOf(kv.mod_revision))],
          success: [op.put(key, ring.bytes)],
        });
        if (response.succeeded) {
          this.#ringWatch.observe(ring.version, revisionOf(response.header.revision), "write");
          return;
        }
      }
      throw new ConflictError(
        `Cannot set ring version ${ring.version}: the ring kept changing ` +
          `(${ETCD_CAS_ATTEMPTS_MAX} attempts)`,
      );
    });
  }

  /**
   * Calls `callback` with each ring newer than the newest this instance has
   * observed (by `initialize`, `getRing`, `setRing` or a watch), in version
   * order, each once; an instance that observed none takes the first ring it
   * reads as current (call `getRing()` first to miss nothing after it).
   * One etcd watch per instance feeds every callback; it starts right after
   * the observed ring, so nothing stored meanwhile is lost, and it resumes
   * after etcd restarts. See `_etcd_ring_watch.ts`.
   */
  watchRing(callback: (ring: RingRecord) => void): () => void {
    if (this.#closed) throw new ClosedError(closedMessage(this, "watch the ring"));
    return this.#ringWatch.subscribe(callback);
  }

  /**
   * Resolves once this instance's ring watchers have been offered the ring
   * stored in etcd now: after a `setRing` anywhere, every watcher of this
   * instance has seen it when this resolves. Resolves at once without
   * watchers or after `close()`.
   *
   * @throws {MetadataUnavailableError} when the watch does not catch up
   * within {@linkcode ETCD_RING_SYNC_TIMEOUT_MS}.
   */
  syncRingWatchers(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const operation = "synchronize the ring watchers";
    return this.#call(operation, async () => {
      const currentRevision = async () => {
        const [[kv]] = await this.#read(op.get(this.#keys.ring));
        return kv === undefined ? 0 : revisionOf(kv.mod_revision);
      };
      if (!await this.#ringWatch.caughtUp(currentRevision, ETCD_RING_SYNC_TIMEOUT_MS)) {
        throw new MetadataUnavailableError(
          `Cannot ${operation}: the ring watch on ${this.#where()} did not catch up within ` +
            `${ETCD_RING_SYNC_TIMEOUT_MS} ms`,
        );
      }
    });
  }

  /**
   * Stops the ring watch and closes the client, so that nothing keeps the
   * process alive; later calls throw {@linkcode ClosedError}.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#ringWatch.close(ETCD_CLOSE_TIMEOUT_MS);
    this.#client.close();
  }
}

/**
 * Checks a ring record for etcd, which reads versions from the stored bytes.
 *
 * @throws {RangeError} on a bad version, or bytes that encode another version.
 * @throws {SyntaxError} when the bytes are not a `models.Ring`.
 */
function checkRingRecord(ring: RingRecord): void {
  checkRing(ring);
  const encoded = ringVersionOf(ring.bytes);
  if (encoded !== ring.version) {
    throw new RangeError(
      `Cannot store ring version ${ring.version}: its bytes encode version ${encoded}`,
    );
  }
}

/** The typed error of a failed stream ('error' events carry raw grpc errors). */
function castStreamError(error: unknown): unknown {
  return error instanceof Error ? castGrpcError(error) : error;
}

/** Options of {@linkcode wipeEtcd}. */
export type WipeEtcdOptions = Omit<EtcdMetadataOptions, "clock" | "uuid" | "logger">;

/**
 * Deletes every key under the prefix (`torusctl wipe`): the cluster's global
 * metadata, ring, volumes, locks, snapshots and peer registrations. Keys of
 * neighbouring prefixes are kept (the prefix ends in `/`). Leases are left to
 * expire.
 *
 * @returns the number of keys deleted.
 * @throws {MetadataUnavailableError} when etcd cannot be reached.
 */
export async function wipeEtcd(options: WipeEtcdOptions): Promise<number> {
  const keys = new EtcdKeys(options.keyPrefix ?? ETCD_KEY_PREFIX_DEFAULT);
  const { client, endpoints } = await connectEtcd(options);
  try {
    const response = await client.kv.deleteRange({
      key: keys.all,
      range_end: prefixRangeEnd(keys.all),
    });
    return Number(response.deleted);
  } catch (error) {
    throw translateError(`wipe ${keys.prefix}`, endpoints, error);
  } finally {
    client.close();
  }
}
