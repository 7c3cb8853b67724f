/**
 * A {@linkcode File}: one open volume, read and written at byte offsets.
 *
 * Semantics follow the original Torus: the first write after an open or a
 * sync opens a write session under a new INode number; `sync()` makes the
 * session's blocks durable, writes the INode, makes it durable, and then
 * commits it as the volume's current INode with a fenced compare-and-swap.
 * Readers of an older INode (snapshots) are never disturbed: a block that a
 * committed INode references is copied on write, and only blocks written in
 * the open session change in place, so a 4 KiB write costs one 4 KiB write
 * once its block has been copied into the session.
 *
 * Concurrency: any number of reads and writes may be in flight (NBD issues
 * many). Requests touching the same block are ordered by a per-block lock;
 * `sync()` waits for requests in flight and holds new ones back.
 *
 * @module
 */
import { assert } from "../assert.ts";
import { INodeRef } from "../core/block_ref.ts";
import type { Blockset } from "../blockset/blockset.ts";
import { FencedError, OutOfSpaceError, ReadOnlyError } from "../errors.ts";
import { type INodeRecord, type INodeStore, inodeStoredBytes } from "../inode/inode_store.ts";
import type { LockToken, MetadataService, VolumeInfo } from "../metadata/metadata_service.ts";
import type { BlockStore } from "../storage/block_store.ts";
import { KeyedRwLock, RwLock } from "./rw_lock.ts";

/**
 * Bytes added to the measured size of a volume's INode when judging whether
 * the next one fits: its numbers (INode, replaced INode, size) may take a few
 * more bytes each time.
 */
const INODE_GROWTH_MARGIN_BYTES = 64;
/**
 * Tries of one write that finds the store low: each after a commit and a
 * collection (shared with concurrent writers, so a later one may find the
 * space taken again); then the write fails with `OutOfSpaceError`.
 */
const RECLAIM_ATTEMPTS_MAX = 4;

/**
 * Why a {@linkcode File} asks for a collection (`FileOptions.reclaimSpace`):
 * `"full"` when a write found the store full and waits for it, `"close"` when
 * the file is closed after committing.
 */
export type ReclaimReason = "full" | "close";

/** What a {@linkcode File} is opened with. */
export interface FileOptions {
  volume: VolumeInfo;
  /** The INode the file starts from. */
  head: INodeRecord;
  blockset: Blockset;
  inodes: INodeStore;
  store: BlockStore;
  metadata: MetadataService;
  /** The volume's write lock; null opens the file read-only. */
  lock: LockToken | null;
  /** Called once when the file is closed (releases the lock). */
  onClose?: () => Promise<void>;
  /**
   * Frees unreferenced blocks (garbage collection). When given:
   * - a write that finds the store full commits the session, calls this, and
   *   retries;
   * - closing calls it after the last commit when this file committed
   *   anything since its last call: blocks that commits replaced (copies made
   *   on write keep their originals alive) are freed while the volume is not
   *   in use, not under the next writer.
   *
   * It is told which of the two it is, for accounting.
   */
  reclaimSpace?: (reason: ReclaimReason) => Promise<void>;
}

/** Where {@linkcode File.seek} counts from. */
export type Whence = "start" | "current" | "end";

/** The part of a read or write that falls in one block. */
interface Piece {
  /** The block's index in the file. */
  index: number;
  /** Where the part starts in the block. */
  offsetBytes: number;
  lengthBytes: number;
  /** Where the part starts in the caller's buffer. */
  targetOffset: number;
}

/** An open volume. */
export class File {
  #volume: VolumeInfo;
  #blockset: Blockset;
  #inodes: INodeStore;
  #store: BlockStore;
  #metadata: MetadataService;
  #lock: LockToken | null;
  #onClose?: () => Promise<void>;
  #reclaimSpace?: (reason: ReclaimReason) => Promise<void>;
  #reclaiming: Promise<void> | null = null;
  /** Whether a session was committed since the last reclaim. */
  #committedSinceReclaim = false;
  /** Blocks that writes in flight may still allocate (one per block they touch, at most). */
  #reservedBlocks = 0;
  /** Stored size of the last INode and the length of its blockset, to size the next one. */
  #lastINode: { bytes: number; blocks: number };
  #head: INodeRef;
  #sizeBytes: number;
  #offsetBytes = 0;
  #session: Promise<INodeRef> | null = null;
  #fenced: FencedError | null = null;
  #closed = false;
  #io = new RwLock();
  #blocks = new KeyedRwLock();

  constructor(options: FileOptions) {
    this.#volume = options.volume;
    this.#blockset = options.blockset;
    this.#inodes = options.inodes;
    this.#store = options.store;
    this.#metadata = options.metadata;
    this.#lock = options.lock;
    this.#onClose = options.onClose;
    this.#reclaimSpace = options.reclaimSpace;
    this.#head = options.head.ref;
    this.#sizeBytes = options.head.sizeBytes;
    this.#lastINode = {
      bytes: inodeStoredBytes(options.head),
      blocks: this.#blockset.length(),
    };
  }

  /** The volume's record as of its opening, or of its last {@linkcode File.grow}. */
  get volume(): VolumeInfo {
    return this.#volume;
  }

  /**
   * Adopts a grown record of the volume (after `torusctl volume resize`): a
   * writable file grows to its size at once, as sparse blocks, and its next
   * sync records the size in its INode. A read-only file, and a smaller or
   * equal size, change nothing: readers see a new size when they reopen.
   */
  async grow(volume: VolumeInfo): Promise<void> {
    assert(volume.id === this.#volume.id, "grow() with another volume's record");
    if (this.readOnly || volume.sizeBytes <= this.#sizeBytes) return;
    this.#volume = volume;
    await this.truncate(volume.sizeBytes);
  }

  /**
   * Which parts of `[offsetBytes, offsetBytes + lengthBytes)` are sparse
   * (blocks never written, or trimmed: they read as zeros), as consecutive
   * runs covering the range exactly; neighbouring blocks of the same kind
   * are one run. A snapshot of the blockset as it is now: writes in flight
   * may change it.
   *
   * @throws {RangeError} when the range is outside the file.
   */
  allocation(offsetBytes: number, lengthBytes: number): { lengthBytes: number; sparse: boolean }[] {
    this.#checkRange("map", offsetBytes, lengthBytes);
    const runs: { lengthBytes: number; sparse: boolean }[] = [];
    const end = offsetBytes + lengthBytes;
    for (let at = offsetBytes; at < end;) {
      const index = Math.floor(at / this.blockSizeBytes);
      const blockEnd = Math.min(end, (index + 1) * this.blockSizeBytes);
      const sparse = this.#blockset.isSparse(index);
      const last = runs.at(-1);
      if (last !== undefined && last.sparse === sparse) last.lengthBytes += blockEnd - at;
      else runs.push({ lengthBytes: blockEnd - at, sparse });
      at = blockEnd;
    }
    return runs;
  }

  /** Size of the file, in bytes. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** Size of its blocks, in bytes. */
  get blockSizeBytes(): number {
    return this.#blockset.blockSizeBytes;
  }

  /** True when the file cannot be written. */
  get readOnly(): boolean {
    return this.#lock === null;
  }

  /** The last committed INode. */
  get head(): INodeRef {
    return this.#head;
  }

  /** Whether writes are waiting for a sync. */
  get dirty(): boolean {
    return this.#session !== null;
  }

  /**
   * Reads `lengthBytes` at `offsetBytes`, into `into` when given (it must
   * have exactly `lengthBytes`; it is returned).
   *
   * @throws {RangeError} when the range is not inside the file.
   * @throws {BlockCorruptError} when a block fails its checksum.
   */
  async readAt(offsetBytes: number, lengthBytes: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#checkRange("read", offsetBytes, lengthBytes);
    if (into !== undefined && into.length !== lengthBytes) {
      throw new RangeError(`Cannot read ${lengthBytes} bytes into a buffer of ${into.length}`);
    }
    const result = into ?? new Uint8Array(lengthBytes);
    const rest = this.#readNow(this.#pieces(offsetBytes, lengthBytes), result);
    if (rest.length === 0) return result;
    await this.#io.with(false, async () => {
      await Promise.all(
        rest.map((piece) =>
          this.#blocks.with(piece.index, false, async () => {
            await this.#blockset.read(
              piece.index,
              { offsetBytes: piece.offsetBytes, lengthBytes: piece.lengthBytes },
              result.subarray(piece.targetOffset, piece.targetOffset + piece.lengthBytes),
            );
          })
        ),
      );
    });
    return result;
  }

  /**
   * Reads into `result`, without waiting, the pieces that need no wait: no
   * writer holds or waits for the file or the piece's block, and the block
   * can be read at once (from the page cache). Returns the other pieces, for
   * {@linkcode File.readAt} to read the waiting way. Done in one synchronous
   * run, it needs no lock: nothing can change in between.
   */
  #readNow(pieces: Piece[], result: Uint8Array): Piece[] {
    if (!this.#io.readableNow) return pieces;
    return pieces.filter((piece) => {
      if (!this.#blocks.readableNow(piece.index)) return true;
      const range = { offsetBytes: piece.offsetBytes, lengthBytes: piece.lengthBytes };
      const target = result.subarray(piece.targetOffset, piece.targetOffset + piece.lengthBytes);
      return !this.#blockset.readNow(piece.index, range, target);
    });
  }

  /**
   * Writes `data` at `offsetBytes`. Not durable until {@linkcode File.sync}.
   *
   * @throws {RangeError} when the range is not inside the file.
   * @throws {ReadOnlyError} on a read-only file.
   * @throws {FencedError} when the file lost its lock.
   */
  async writeAt(data: Uint8Array, offsetBytes: number): Promise<void> {
    this.#checkWritable();
    this.#checkRange("write", offsetBytes, data.length);
    if (this.#writeNow(data, offsetBytes)) return;
    if (this.#reclaimSpace === undefined) {
      await this.#writeOnce(data, offsetBytes, false);
      return;
    }
    for (let attempt = 1;; attempt++) {
      const last = attempt === RECLAIM_ATTEMPTS_MAX;
      try {
        if (await this.#writeOnce(data, offsetBytes, true)) return;
      } catch (error) {
        if (!(error instanceof OutOfSpaceError) || last) throw error;
      }
      if (last) {
        throw new OutOfSpaceError(
          `Cannot write ${data.length} bytes to volume "${this.volume.name}": the block store is full (its last free blocks are kept for the volume's INode)`,
        );
      }
      // Blocks copied on write in this session keep their originals alive
      // until the session is committed: commit, collect, and try again.
      await this.#reclaim();
    }
  }

  /**
   * {@linkcode File.writeAt} without waiting, when a write session is open,
   * no writer waits for the file, nobody holds or waits for a touched block,
   * the write changes part of every block it touches (whole blocks go to the
   * I/O thread), there is space to spare, and the layers can write at once:
   * true when written. Done in one synchronous run, like
   * {@linkcode File.readAt}'s. A false after some pieces were written leaves
   * them for `writeAt()` to write again (the same bytes); an
   * `OutOfSpaceError` is left to `writeAt()` too, which makes room.
   */
  #writeNow(data: Uint8Array, offsetBytes: number): boolean {
    // Set once the session's INode is allocated, cleared by the commit.
    if (this.#blockset.session === null) return false;
    if (!this.#io.readableNow) return false;
    const pieces = this.#pieces(offsetBytes, data.length);
    for (const piece of pieces) {
      if (piece.lengthBytes === this.blockSizeBytes || !this.#blocks.idle(piece.index)) {
        return false;
      }
    }
    if (this.#reclaimSpace !== undefined && this.#lowOnSpace(pieces.length)) return false;
    try {
      for (const piece of pieces) {
        const chunk = data.subarray(piece.targetOffset, piece.targetOffset + piece.lengthBytes);
        if (!this.#blockset.writeRangeNow(piece.index, piece.offsetBytes, chunk)) return false;
      }
    } catch (error) {
      if (error instanceof OutOfSpaceError) return false;
      throw error;
    }
    return true;
  }

  /**
   * True when the store's free blocks, less those that writes in flight may
   * still take and `moreBlocks`, would barely hold this file's INode:
   * committing then (while it still fits) lets GC free the blocks this
   * session copied, instead of failing the commit later.
   */
  #lowOnSpace(moreBlocks: number): boolean {
    const free = this.#store.numBlocks() - this.#store.usedBlocks() - this.#reservedBlocks;
    return free - moreBlocks < this.#inodeBlocksNeeded();
  }

  /** Blocks the next INode takes: the last one's size, scaled to the blockset's length now. */
  #inodeBlocksNeeded(): number {
    const { bytes, blocks } = this.#lastINode;
    const scale = Math.max(1, this.#blockset.length() / Math.max(1, blocks));
    return Math.ceil((bytes * scale + INODE_GROWTH_MARGIN_BYTES) / this.blockSizeBytes);
  }

  /** Commits and collects; concurrent callers share one run. */
  #reclaim(): Promise<void> {
    this.#reclaiming ??= (async () => {
      try {
        await this.sync();
        this.#committedSinceReclaim = false;
        await this.#reclaimSpace!("full");
      } finally {
        this.#reclaiming = null;
      }
    })();
    return this.#reclaiming;
  }

  /**
   * Writes, unless `checkSpace` is set and the write could take the space
   * the INode needs: then nothing is written and it returns false.
   */
  async #writeOnce(data: Uint8Array, offsetBytes: number, checkSpace: boolean): Promise<boolean> {
    return await this.#io.with(false, async () => {
      await this.#openSession();
      const pieces = this.#pieces(offsetBytes, data.length);
      // Checked and reserved with no await in between: concurrent writers
      // cannot all pass the check and then take the INode's space together.
      if (checkSpace && this.#lowOnSpace(pieces.length)) return false;
      this.#reservedBlocks += pieces.length;
      try {
        await Promise.all(
          pieces.map((piece) =>
            this.#blocks.with(piece.index, true, async () => {
              const chunk = data.subarray(
                piece.targetOffset,
                piece.targetOffset + piece.lengthBytes,
              );
              if (piece.lengthBytes === this.blockSizeBytes) {
                await this.#blockset.write(piece.index, chunk);
              } else {
                await this.#blockset.writeRange(piece.index, piece.offsetBytes, chunk);
              }
            })
          ),
        );
      } finally {
        this.#reservedBlocks -= pieces.length;
      }
      return true;
    });
  }

  /**
   * Makes `lengthBytes` at `offsetBytes` read as zeros. Whole blocks become
   * sparse (their space is freed by GC once no INode references them);
   * partial blocks at the edges are written with zeros. This is NBD's TRIM and
   * WRITE_ZEROES, and the original's `Trim`.
   */
  async zero(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.#checkWritable();
    this.#checkRange("zero", offsetBytes, lengthBytes);
    const block = this.blockSizeBytes;
    const firstWhole = Math.ceil(offsetBytes / block);
    const endWhole = Math.floor((offsetBytes + lengthBytes) / block);
    if (firstWhole >= endWhole) {
      await this.writeAt(new Uint8Array(lengthBytes), offsetBytes);
      return;
    }
    if (offsetBytes < firstWhole * block) {
      await this.writeAt(new Uint8Array(firstWhole * block - offsetBytes), offsetBytes);
    }
    if (offsetBytes + lengthBytes > endWhole * block) {
      await this.writeAt(
        new Uint8Array(offsetBytes + lengthBytes - endWhole * block),
        endWhole * block,
      );
    }
    await this.#io.with(true, async () => {
      await this.#openSession();
      this.#blockset.trim(firstWhole, endWhole);
    });
  }

  /**
   * Sets the file's size, at most the volume's size. Growing adds sparse
   * blocks; shrinking drops blocks past the end and zeroes the tail.
   */
  async truncate(sizeBytes: number): Promise<void> {
    this.#checkWritable();
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > this.volume.sizeBytes) {
      throw new RangeError(
        `Cannot truncate volume "${this.volume.name}" to ${sizeBytes} bytes: it holds at most ${this.volume.sizeBytes}`,
      );
    }
    if (sizeBytes < this.#sizeBytes && sizeBytes % this.blockSizeBytes !== 0) {
      const end = Math.min(
        this.#sizeBytes,
        Math.ceil(sizeBytes / this.blockSizeBytes) * this.blockSizeBytes,
      );
      await this.writeAt(new Uint8Array(end - sizeBytes), sizeBytes);
    }
    await this.#io.with(true, async () => {
      await this.#openSession();
      this.#blockset.truncate(Math.ceil(sizeBytes / this.blockSizeBytes));
      this.#sizeBytes = sizeBytes;
    });
  }

  /**
   * Commits everything written so far: blocks durable, then the INode durable,
   * then the volume's current INode swapped to it under the fenced lock. A
   * no-op when nothing was written since the last sync.
   *
   * @throws {FencedError} when the lock was lost; the file then refuses writes.
   */
  async sync(): Promise<void> {
    await this.#io.with(true, async () => {
      if (this.#session === null) return;
      const session = await this.#session;
      await this.#store.flush();
      const record = {
        ref: session,
        replaces: this.#head.inode,
        sizeBytes: this.#sizeBytes,
        layers: this.#blockset.marshal(),
      };
      await this.#inodes.writeINode(record);
      this.#lastINode = { bytes: inodeStoredBytes(record), blocks: this.#blockset.length() };
      await this.#store.flush();
      try {
        await this.#metadata.commitINode(this.#lock!, session);
      } catch (error) {
        if (error instanceof FencedError) this.#fenced = error;
        throw error;
      }
      this.#head = session;
      this.#session = null;
      this.#committedSinceReclaim = true;
      this.#blockset.endSession();
    });
  }

  /** Reads at the file offset and advances it. */
  async read(lengthBytes: number): Promise<Uint8Array> {
    const length = Math.min(lengthBytes, this.#sizeBytes - this.#offsetBytes);
    const data = await this.readAt(this.#offsetBytes, Math.max(0, length));
    this.#offsetBytes += data.length;
    return data;
  }

  /** Writes at the file offset and advances it. */
  async write(data: Uint8Array): Promise<void> {
    await this.writeAt(data, this.#offsetBytes);
    this.#offsetBytes += data.length;
  }

  /**
   * Moves the file offset; returns the new offset (the original returned its
   * argument instead).
   */
  seek(offsetBytes: number, whence: Whence = "start"): number {
    const base = whence === "start"
      ? 0
      : whence === "current"
      ? this.#offsetBytes
      : this.#sizeBytes;
    const target = base + offsetBytes;
    if (!Number.isSafeInteger(target) || target < 0 || target > this.#sizeBytes) {
      throw new RangeError(`Cannot seek to ${target}: the file has ${this.#sizeBytes} bytes`);
    }
    this.#offsetBytes = target;
    return target;
  }

  /**
   * Syncs, collects what this file's commits replaced (see
   * `FileOptions.reclaimSpace`), then releases the lock (always, even when
   * the sync fails).
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (!this.readOnly && this.#fenced === null) {
        await this.sync();
        // Collection frees space, it loses nothing: if it fails, the next
        // one (periodic, or a writer's) collects the same blocks.
        if (this.#committedSinceReclaim && this.#reclaimSpace !== undefined) {
          await this.#reclaimSpace("close").catch(() => {});
        }
      }
    } finally {
      await this.#onClose?.();
    }
  }

  #openSession(): Promise<INodeRef> {
    if (this.#session === null) {
      const volumeId = this.volume.id;
      const opening = this.#metadata.nextINode(volumeId).then((inode) => {
        const ref = new INodeRef(volumeId, inode);
        this.#blockset.beginSession(ref);
        return ref;
      });
      this.#session = opening;
      opening.catch(() => {
        if (this.#session === opening) this.#session = null;
      });
    }
    return this.#session;
  }

  #pieces(offsetBytes: number, lengthBytes: number): Piece[] {
    const block = this.blockSizeBytes;
    const pieces: Piece[] = [];
    let position = offsetBytes;
    const end = offsetBytes + lengthBytes;
    while (position < end) {
      const index = Math.floor(position / block);
      const within = position - index * block;
      const length = Math.min(block - within, end - position);
      pieces.push({
        index,
        offsetBytes: within,
        lengthBytes: length,
        targetOffset: position - offsetBytes,
      });
      position += length;
    }
    return pieces;
  }

  #checkRange(what: string, offsetBytes: number, lengthBytes: number): void {
    if (
      !Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 ||
      lengthBytes < 0 || offsetBytes + lengthBytes > this.#sizeBytes
    ) {
      throw new RangeError(
        `Cannot ${what} ${lengthBytes} bytes at offset ${offsetBytes} of volume "${this.volume.name}": it has ${this.#sizeBytes} bytes`,
      );
    }
  }

  #checkWritable(): void {
    if (this.#lock === null) {
      throw new ReadOnlyError(`Cannot write volume "${this.volume.name}": it is open read-only`);
    }
    if (this.#fenced) {
      throw new FencedError(
        `Cannot write volume "${this.volume.name}": its lock was lost (${this.#fenced.message})`,
      );
    }
    if (this.#closed) {
      throw new ReadOnlyError(`Cannot write volume "${this.volume.name}": it is closed`);
    }
  }
}
