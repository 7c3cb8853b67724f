// The BlockStore methods are async so that every error rejects, while their
// I/O is synchronous by design (see the module doc).
// deno-lint-ignore-file require-await
/**
 * The durable `file` BlockStore, the default engine of torusd: fixed-size
 * slots in a data file plus a checksummed index file, in one directory
 * (`<data-dir>/block`). `Documentation/storage.md` describes the on-disk
 * format, the crash-safety argument and the measurements behind the I/O
 * mechanism.
 *
 * ```
 * block/data.blk   slot s at s × blockSize, nSlots × blockSize bytes
 * block/index.blk  [0, 4096)  header, two copies (at 0 and 512)
 *                  then one record of recordSize bytes per slot:
 *                  ref (24) | generation u64 | sector CRC-32 u32 × n | record CRC-32 u32
 *                  | lender slot + 1 u32 | owned-sector bitmap u32 × ⌈n/32⌉ | extension CRC-32 u32
 * block/delta.blk  ⌈nSlots / 2⌉ packed delta records of recordSize bytes: the same, then
 *                  | data-file sector of each owned sector u32 × k | placement CRC-32 u32
 * ```
 *
 * A copy-on-write of a few sectors makes a *delta*: its slot holds only the
 * sectors it owns (the bitmap) and it borrows the others from the slot of the
 * block it was copied from (its lender), whose data then stays put, also
 * after that block is deleted, until no delta borrows from it. A delta of few
 * sectors is *packed*: it takes no slot, its record is in `delta.blk` and its
 * sectors are placed one by one in heap slots shared by all packed deltas;
 * one that outgrows its record moves to a slot. When the last
 * borrower of a deleted block's slot is alone, `flush()` merges it back: its
 * own sectors are copied into the lender's slot, which then holds the block
 * whole, and its own slot is freed; a copy made of it before that flush
 * copies its sectors into the lender first and borrows them there (catching
 * the lender up), rather than owning them too. A 4 KiB write into a
 * committed 512 KiB block so costs a few 4 KiB writes, not a 512 KiB copy.
 *
 * A slot whose record fails its CRC (all zero, torn, garbage) is free. Data
 * is written before its record; `flush()` fdatasyncs the data file, then the
 * index file. Every sector of every block carries a CRC-32 in its record, so
 * a torn data write reads as `BlockCorruptError`, never as wrong bytes.
 *
 * Linux only: it calls libc through FFI (`--allow-ffi`) for `pread`, `pwrite`
 * and `posix_fallocate`. Reads and writes are synchronous calls (microseconds
 * on the page cache, where an async Deno file op costs ~190 µs); only the
 * fdatasyncs of `flush()` and whole-block reads and writes of 128 KiB or more
 * (on the I/O thread of `io_thread.ts`) leave the event loop.
 *
 * @module
 */
import { BLOCK_REF_SIZE_BYTES, BlockRef, readU64, writeU64 } from "../core/block_ref.ts";
import { Slab } from "../core/slab.ts";
import { assert } from "../assert.ts";
import { crc32 } from "../core/crc32.ts";
import { blockDigest, firstBadSector, sectorSizeBytes } from "../core/sector.ts";
import { BLOCK_SIZE_BYTES_MAX, BLOCK_SIZE_BYTES_MIN } from "../constants.ts";
import {
  BlockCorruptError,
  BlockNotFoundError,
  ClosedError,
  OutOfSpaceError,
  TorusError,
} from "../errors.ts";
import {
  type BlockRange,
  type BlockRead,
  type BlockStore,
  checkRange,
  checkWrite,
} from "./block_store.ts";
import { addressOf } from "./address.ts";
import { IO_THREAD_MIN_BYTES, IoThread } from "./io_thread.ts";

/** Name of the data file inside the store directory. */
export const DATA_FILE_NAME = "data.blk";
/** Name of the index file inside the store directory. */
export const INDEX_FILE_NAME = "index.blk";
/** Name of the file of packed delta records inside the store directory (format version 3). */
export const DELTA_FILE_NAME = "delta.blk";
/** Name the index file is built under before it is renamed into place on creation. */
const INDEX_TEMP_FILE_NAME = "index.blk.tmp";
/** First 8 bytes of the index file. */
export const INDEX_MAGIC = "TORUSBLK";
/** Version of the on-disk format this module writes. */
export const INDEX_FORMAT_VERSION = 3;
/**
 * Versions it reads: version 1 had no deltas (its records end with zeros
 * where version 2 keeps a delta's lender and bitmap), version 2 no packed
 * deltas (`delta.blk`); opening such a store adds an empty `delta.blk` and
 * rewrites its header as version 3.
 */
const INDEX_FORMAT_VERSIONS_READ = [1, 2, 3];
/**
 * Records in `delta.blk` per slot of the store: how many copies of blocks
 * can be packed deltas at once (more copies take slots of their own). Half
 * a record per slot covers a volume that fills half the store with every
 * block copied since the last commit.
 */
const DELTA_RECORDS_PER_SLOT = 0.5;
/**
 * Added to a packed delta record's number in its CRC, so that a record of
 * `index.blk` copied into `delta.blk` (or back) never passes.
 */
const DELTA_RECORD_CRC_DOMAIN = 2 ** 48;
/** A packed delta's sector that has no place in the heap (yet). */
const NO_HEAP_SECTOR = 0xffff_ffff;
/** Sectors the data file may have for packed deltas to address them as u32. */
const HEAP_SECTORS_MAX = 2 ** 32 - 1;
/**
 * A copy-on-write whose new block would own more than this fraction of its
 * sectors copies the block whole instead of borrowing from its source: a
 * delta's reads are split across two slots, worth it only when most of the
 * block is shared.
 */
const DELTA_OWNED_FRACTION_MAX = 0.5;
/** Bytes at the start of the index file reserved for the header; records start here. */
export const INDEX_HEADER_REGION_BYTES = 4096;
/**
 * Offsets of the two copies of the header. They sit in different 512-byte
 * device sectors, so a torn header write damages at most one copy.
 */
const HEADER_COPY_OFFSETS_BYTES = [0, 512] as const;
/** Bytes of one header copy: magic, version, block, sector and record sizes, slots, CRC. */
const HEADER_COPY_SIZE_BYTES = 36;
/** Offset of the header CRC-32, which covers the bytes before it. */
const HEADER_CRC_OFFSET_BYTES = 32;
/**
 * The unit a device writes atomically, assumed for the record layout: a
 * record is a power of two of at least {@linkcode RECORD_SIZE_BYTES_MIN}
 * bytes, so a record never straddles a 512-byte boundary unless it is a whole
 * number of such sectors.
 */
const DEVICE_SECTOR_SIZE_BYTES = 512;
/** Smallest index record: ref, generation, one sector CRC and the record CRC fit in 40. */
const RECORD_SIZE_BYTES_MIN = 64;
/** Offset of the BlockRef in a record. */
const RECORD_REF_OFFSET_BYTES = 0;
/** Offset of the u64 generation in a record; 0 marks a free record. */
const RECORD_GENERATION_OFFSET_BYTES = BLOCK_REF_SIZE_BYTES;
/** Offset of the first sector CRC in a record. */
const RECORD_CRCS_OFFSET_BYTES = RECORD_GENERATION_OFFSET_BYTES + 8;
/** A lender field of 0 in a record: the block is whole (not a delta). */
const NO_LENDER = 0;
/** Bytes of the index file read per step when a store is opened. */
const INDEX_SCAN_CHUNK_BYTES = 4 * 1024 * 1024;
/**
 * Bytes written to the data file between two nudges of the kernel to start
 * writing them back (`sync_file_range`): a commit's fdatasync then waits for
 * at most about this much, not for everything written since the last one.
 */
export const WRITEBACK_KICK_BYTES = 32 * 1024 * 1024;
/**
 * Largest single `pwrite` to the data file, in bytes; longer writes are cut
 * into pieces this long. The page cache of Linux 6.x keeps a file in *large
 * folios* as long as the writes that created them, and ext4 then walks every
 * 4 KiB buffer of a folio to change any 4 KiB of it: after whole-block
 * writes of 512 KiB, a 4 KiB overwrite cost about 23 µs in the kernel, after
 * 64 KiB pieces about 4 µs, while filling costs the same either way
 * (`Documentation/benchmarks.md`, session 5).
 */
export const DATA_WRITE_PIECE_BYTES = 64 * 1024;
/**
 * Copies inside the data file shorter than this, in bytes, go through memory
 * (`pread` and `pwrite`) rather than `copy_file_range`, whose fixed cost
 * (a pipe and a splice in the kernel) made a 4 KiB copy about 3 times slower.
 */
const KERNEL_COPY_MIN_BYTES = 64 * 1024;
/**
 * Bytes a flush merges between two yields to the event loop, so that the
 * requests of other clients run while it merges thousands of deltas.
 */
const MERGE_SLICE_BYTES = 8 * 1024 * 1024;
/** Mode of a store directory the engine creates: owner only. */
const STORE_DIRECTORY_MODE = 0o700;
/** Mode of the data and index files: owner only. */
const STORE_FILE_MODE = 0o600;
/** The C library the engine calls through FFI. */
const LIBC_PATH = "libc.so.6";

// Linux x86-64 / aarch64 values of the libc constants used here.
const O_RDWR = 0o2;
const O_CLOEXEC = 0o2000000;
const PROT_READ_WRITE = 0x3;
const MAP_SHARED = 0x1;
const EINTR = 4;
/** `preadv2` errno: the data is not in the page cache (with `RWF_NOWAIT`). */
const EAGAIN = 11;
/** `preadv2` flag: return what the page cache holds rather than wait for the disk (Linux 4.14). */
const RWF_NOWAIT = 0x8;
/** 2^32: splits a 64-bit value into the u32 halves of a `Uint32Array`. */
const U32_RANGE = 2 ** 32;
/** `sync_file_range` flag: start writeback of dirty pages, do not wait. */
const SYNC_FILE_RANGE_WRITE = 2;
const ENOSPC = 28;
const EINVAL = 22;
const ENOSYS = 38;
const EOPNOTSUPP = 95;
const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  5: "EIO",
  9: "EBADF",
  12: "ENOMEM",
  13: "EACCES",
  22: "EINVAL",
  27: "EFBIG",
  28: "ENOSPC",
  30: "EROFS",
  38: "ENOSYS",
  95: "EOPNOTSUPP",
  122: "EDQUOT",
};

/**
 * How a store moves bytes between memory and its files:
 * - `pread`: synchronous `pread`/`pwrite` through FFI (the default, chosen by
 *   measurement; see `Documentation/storage.md`); with blocks of at least
 *   `IO_THREAD_MIN_BYTES`, whole-block writes and the reads that miss the
 *   page cache go to the I/O thread;
 * - `pread-thread`: `pread`, with every read of a block stored whole on the
 *   I/O thread, cached or not (the tests of that path use it: whether a
 *   read finds the page cache is up to the kernel);
 * - `mmap`: both files mapped `MAP_SHARED`, bytes copied in and out;
 * - `fsfile`: `Deno.FsFile` `seekSync` + `readSync`/`writeSync`.
 *
 * The alternatives exist for `tests/bench/file_store_bench.ts` and tests.
 */
export type FileBlockStoreIo = "pread" | "pread-thread" | "mmap" | "fsfile";

/** Options of {@linkcode FileBlockStore.open}. */
export interface FileBlockStoreOptions {
  /** The store directory, `<data-dir>/block`; created (mode 0700) when missing. */
  directory: string;
  /** Size of every block; fixed when the store is created. */
  blockSizeBytes: number;
  /**
   * Capacity in bytes; the store has `floor(sizeBytes / blockSizeBytes)` slots.
   * A larger value than last time grows the files; a smaller one shrinks them
   * when the stored blocks fit.
   */
  sizeBytes: number;
  /** The I/O mechanism; leave unset outside benchmarks. */
  io?: FileBlockStoreIo;
}

/** The size of one index record for a block size: a power of two, at least 64 bytes. */
export function indexRecordSizeBytes(blockSizeBytes: number): number {
  const needed = recordExtensionCrcOffsetBytes(blockSizeBytes) + 4;
  let size = RECORD_SIZE_BYTES_MIN;
  while (size < needed) size *= 2;
  return size;
}

/** u32 words of a delta's owned-sector bitmap. */
function ownedWords(blockSizeBytes: number): number {
  return Math.ceil(blockSizeBytes / sectorSizeBytes(blockSizeBytes) / 32);
}

/** Offset of the record extension (lender, bitmap): right after the record CRC. */
function recordExtensionOffsetBytes(blockSizeBytes: number): number {
  return recordCrcOffsetBytes(blockSizeBytes) + 4;
}

/** Offset of the extension CRC: after the lender field and the bitmap. */
function recordExtensionCrcOffsetBytes(blockSizeBytes: number): number {
  return recordExtensionOffsetBytes(blockSizeBytes) + 4 + 4 * ownedWords(blockSizeBytes);
}

/**
 * Sets a record's CRC for `slot` and, when it is a delta, the extension's
 * CRC, which continues from the record CRC so that an extension left over
 * from an older record in the same place never passes.
 */
function sealRecord(record: Uint8Array, blockSizeBytes: number, slot: number): void {
  const view = new DataView(record.buffer, record.byteOffset, record.length);
  const crcOffset = recordCrcOffsetBytes(blockSizeBytes);
  const crc = recordCrc(record, crcOffset, slot);
  view.setUint32(crcOffset, crc, true);
  const extension = recordExtensionOffsetBytes(blockSizeBytes);
  const extensionCrc = recordExtensionCrcOffsetBytes(blockSizeBytes);
  if (view.getUint32(extension, true) === NO_LENDER) return;
  view.setUint32(extensionCrc, crc32(record.subarray(extension, extensionCrc), crc), true);
}

/** Whether a record's extension, when it has one, passes its CRC. */
function extensionValid(record: Uint8Array, blockSizeBytes: number): boolean {
  const view = new DataView(record.buffer, record.byteOffset, record.length);
  const extension = recordExtensionOffsetBytes(blockSizeBytes);
  if (view.getUint32(extension, true) === NO_LENDER) return true;
  const extensionCrc = recordExtensionCrcOffsetBytes(blockSizeBytes);
  const crc = view.getUint32(recordCrcOffsetBytes(blockSizeBytes), true);
  return crc32(record.subarray(extension, extensionCrc), crc) ===
    view.getUint32(extensionCrc, true);
}

/**
 * The CRC-32 of a record: over its bytes before the CRC, then over the slot
 * number as u64 LE, so that a record written to the wrong place never passes.
 */
function recordCrc(record: Uint8Array, crcOffsetBytes: number, slot: number): number {
  const slotBytes = new Uint8Array(8);
  writeU64(new DataView(slotBytes.buffer), 0, slot);
  return crc32(slotBytes, crc32(record.subarray(0, crcOffsetBytes)));
}

/** Offset of a packed delta's placement (u32 sector numbers, then a CRC): after the extension CRC. */
function placementOffsetBytes(blockSizeBytes: number): number {
  return recordExtensionCrcOffsetBytes(blockSizeBytes) + 4;
}

/**
 * The most sectors a *packed* delta owns for a block size: as many as their
 * places fit in its record after the extension (111 of the 128 sectors of a
 * 512 KiB block), short of the whole block. Past that it moves to a slot,
 * which costs a copy of the block: a packed delta that owns most of its
 * block is cheaper to keep until a merge (after a commit and a garbage
 * collection) makes it whole. 0 when no place fits (blocks of 16 KiB or
 * less): such stores make only deltas with slots of their own.
 */
export function packedDeltaSectorsMax(blockSizeBytes: number): number {
  const room = indexRecordSizeBytes(blockSizeBytes) - placementOffsetBytes(blockSizeBytes) - 4;
  const sectors = blockSizeBytes / sectorSizeBytes(blockSizeBytes);
  return Math.max(
    0,
    Math.min(Math.floor(room / 4), sectors - 1),
  );
}

/** Records of `delta.blk` for a store of `numSlots` slots. */
function deltaRecordCount(blockSizeBytes: number, numSlots: number): number {
  return packedDeltaSectorsMax(blockSizeBytes) > 0
    ? Math.ceil(numSlots * DELTA_RECORDS_PER_SLOT)
    : 0;
}

/** The number a packed delta record's CRC is continued over: its own, in another domain. */
function deltaRecordPlace(record: number): number {
  return DELTA_RECORD_CRC_DOMAIN + record;
}

/**
 * Sets the CRC after a packed delta's `count` places, continued from the
 * extension CRC (so call it after {@linkcode sealRecord}).
 */
function sealPlacement(record: Uint8Array, blockSizeBytes: number, count: number): void {
  const view = new DataView(record.buffer, record.byteOffset, record.length);
  const at = placementOffsetBytes(blockSizeBytes);
  const from = view.getUint32(recordExtensionCrcOffsetBytes(blockSizeBytes), true);
  view.setUint32(at + 4 * count, crc32(record.subarray(at, at + 4 * count), from), true);
}

/** Whether a packed delta's `count` places pass their CRC. */
function placementValid(record: Uint8Array, blockSizeBytes: number, count: number): boolean {
  const view = new DataView(record.buffer, record.byteOffset, record.length);
  const at = placementOffsetBytes(blockSizeBytes);
  const from = view.getUint32(recordExtensionCrcOffsetBytes(blockSizeBytes), true);
  return crc32(record.subarray(at, at + 4 * count), from) === view.getUint32(at + 4 * count, true);
}

/** Set bits of a u32. */
function popcount32(word: number): number {
  let bits = word - ((word >>> 1) & 0x5555_5555);
  bits = (bits & 0x3333_3333) + ((bits >>> 2) & 0x3333_3333);
  return (((bits + (bits >>> 4)) & 0x0f0f_0f0f) * 0x0101_0101) >>> 24;
}

/** Offset of the record CRC for a block size: right after the sector CRCs. */
function recordCrcOffsetBytes(blockSizeBytes: number): number {
  return RECORD_CRCS_OFFSET_BYTES + 4 * (blockSizeBytes / sectorSizeBytes(blockSizeBytes));
}

assert(INDEX_HEADER_REGION_BYTES % DEVICE_SECTOR_SIZE_BYTES === 0);
assert(HEADER_COPY_OFFSETS_BYTES[1] - HEADER_COPY_OFFSETS_BYTES[0] >= DEVICE_SECTOR_SIZE_BYTES);
assert(HEADER_COPY_SIZE_BYTES <= DEVICE_SECTOR_SIZE_BYTES);
assert(DEVICE_SECTOR_SIZE_BYTES % RECORD_SIZE_BYTES_MIN === 0);

// ---------------------------------------------------------------------------
// libc through FFI

const LIBC_SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  preadv2: { parameters: ["i32", "buffer", "i32", "i64", "i32"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  posix_fallocate: { parameters: ["i32", "i64", "i64"], result: "i32" },
  sync_file_range: {
    parameters: ["i32", "i64", "i64", "u32"],
    result: "i32",
    // On a thread of the runtime's pool: submitting the writeback of
    // thousands of pages costs milliseconds of kernel time, which the event
    // loop must not pay.
    nonblocking: true,
  },
  copy_file_range: {
    parameters: ["i32", "buffer", "i32", "buffer", "usize", "u32"],
    result: "isize",
  },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];
let libcSymbols: Libc | undefined;

function libc(): Libc {
  if (!libcSymbols) {
    try {
      libcSymbols = Deno.dlopen(LIBC_PATH, LIBC_SYMBOLS).symbols;
    } catch (error) {
      throw new Error(
        `Cannot load ${LIBC_PATH} for the file block store (it needs Linux and --allow-ffi): ${
          error instanceof Error ? error.message : String(error)
        }`,
        { cause: error },
      );
    }
  }
  return libcSymbols;
}

function errno(): number {
  const location = libc().__errno_location();
  return location === null ? 0 : new Deno.UnsafePointerView(location).getInt32();
}

function errnoName(code: number): string {
  return ERRNO_NAMES[code] ?? `errno ${code}`;
}

function cString(text: string): Uint8Array {
  return new TextEncoder().encode(`${text}\0`);
}

function openFd(path: string): number {
  const fd = libc().open(cString(path), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) throw new Error(`Cannot open ${path}: ${errnoName(errno())}`);
  return fd;
}

/** Reserves disk space for `[offsetBytes, offsetBytes + lengthBytes)`, extending the file. */
function preallocate(path: string, offsetBytes: number, lengthBytes: number): void {
  if (lengthBytes <= 0) return;
  const fd = openFd(path);
  try {
    const code = libc().posix_fallocate(fd, BigInt(offsetBytes), BigInt(lengthBytes));
    if (code !== 0) {
      const why = code === ENOSPC ? "the filesystem is full" : errnoName(code);
      throw new TorusError(
        `Cannot allocate ${lengthBytes} bytes for the block store in ${path}: ${why}`,
      );
    }
  } finally {
    libc().close(fd);
  }
}

// ---------------------------------------------------------------------------
// Positioned I/O on one file

/** Synchronous positioned I/O on one file: page-cache hits cost microseconds. */
interface PositionedIo {
  /** Fills `target` from `offsetBytes`. */
  readAt(offsetBytes: number, target: Uint8Array): void;
  /**
   * Fills `target` from `offsetBytes` if the page cache holds all of it,
   * without waiting for the disk; false when it does not (or when this I/O
   * cannot tell), and `target` then holds no particular bytes. Reads that
   * find their data cached are served here, on the calling thread, where the
   * bytes stay in the CPU's cache for what comes next (the checksum, the
   * socket); the others go to the I/O thread ({@linkcode readAtAsync}).
   */
  readNow(offsetBytes: number, target: Uint8Array): boolean;
  /** Writes all of `source` at `offsetBytes`. */
  writeAt(offsetBytes: number, source: Uint8Array): void;
  /**
   * Whether {@linkcode readAtAsync} (any read) and {@linkcode writeAtAsync}
   * (writes of at least `IO_THREAD_MIN_BYTES`) can leave the event loop;
   * when false they are the synchronous calls.
   */
  readonly offloads: boolean;
  /** Like {@linkcode readAt}, on the I/O thread when it has room. */
  readAtAsync(offsetBytes: number, target: Uint8Array): Promise<void>;
  /** Like {@linkcode writeAt}, on the I/O thread when it has room. */
  writeAtAsync(offsetBytes: number, source: Uint8Array): Promise<void>;
  /**
   * Copies `lengthBytes` from `fromBytes` to `toBytes` (ranges do not
   * overlap), through `scratch` when it cannot copy inside the kernel.
   */
  copy(fromBytes: number, toBytes: number, lengthBytes: number, scratch: Uint8Array): void;
  /**
   * Starts writing the file's dirty pages back to the disk without waiting,
   * so that a later fdatasync has little left to do. A hint: may do nothing.
   */
  startWriteback(): void;
  /** Resolves when no writeback started by {@linkcode startWriteback} is still being submitted. */
  idle(): Promise<void>;
  /** Releases the descriptor or mapping; call after {@linkcode idle}. */
  release(): void;
}

/** `pread`/`pwrite` through FFI on a descriptor of its own. */
class PreadIo implements PositionedIo {
  readonly offloads: boolean;
  #path: string;
  #fd: number;
  /** The thread large calls go to, when this file has one. */
  #thread: IoThread | null;
  /** Whether `copy_file_range` works here; cleared at its first refusal. */
  #kernelCopy = true;
  /** The in/out offsets `copy_file_range` reads and advances. */
  #copyOffsets = new BigInt64Array(2);
  /** The writeback being submitted on another thread, if any. */
  #writeback: Promise<void> | null = null;
  /** Whether `preadv2` with `RWF_NOWAIT` works here; cleared at its first refusal. */
  #nowait: boolean;
  /** The one `struct iovec` of {@linkcode readNow}: base and length, as u32 halves (little-endian). */
  #iovec = new Uint32Array(4);
  #iovecBytes = new Uint8Array(this.#iovec.buffer);

  /**
   * Opens `path`; with `threaded`, large calls of the async methods go to the
   * I/O thread, and without `cachedReads` {@linkcode readNow} reads nothing.
   */
  constructor(path: string, threaded = false, cachedReads = true) {
    this.#path = path;
    this.#nowait = cachedReads;
    this.#fd = openFd(path);
    this.#thread = threaded ? IoThread.acquire() : null;
    this.offloads = threaded;
  }

  readNow(offsetBytes: number, target: Uint8Array): boolean {
    if (!this.#nowait) return false;
    const iovec = this.#iovec;
    const base = addressOf(target);
    let done = 0;
    while (done < target.length) {
      const address = base + done;
      iovec[0] = address % U32_RANGE;
      iovec[1] = Math.floor(address / U32_RANGE);
      iovec[2] = target.length - done;
      iovec[3] = 0;
      const n = Number(
        libc().preadv2(this.#fd, this.#iovecBytes, 1, BigInt(offsetBytes + done), RWF_NOWAIT),
      );
      if (n > 0) {
        done += n;
        continue;
      }
      if (n === 0) throw this.#readError(offsetBytes, target.length, "past the end");
      const code = errno();
      if (code === EINTR) continue;
      if (code === EAGAIN) return false;
      // Refused (a kernel before 4.14, a filesystem without it): do not ask again.
      if (code === EOPNOTSUPP || code === EINVAL || code === ENOSYS) {
        this.#nowait = false;
        return false;
      }
      throw this.#readError(offsetBytes, target.length, errnoName(code));
    }
    return true;
  }

  async readAtAsync(offsetBytes: number, target: Uint8Array): Promise<void> {
    const thread = this.#thread;
    if (thread !== null && thread.hasRoom) {
      const result = await thread.read(this.#fd, target, offsetBytes);
      if (result === target.length) return;
      if (result >= 0) throw this.#readError(offsetBytes, target.length, "past the end");
      if (result < 0) throw this.#readError(offsetBytes, target.length, errnoName(-result));
      // NaN: not run (the thread failed); read here.
    }
    this.readAt(offsetBytes, target);
  }

  async writeAtAsync(offsetBytes: number, source: Uint8Array): Promise<void> {
    const thread = this.#thread;
    if (thread !== null && thread.hasRoom && source.length >= IO_THREAD_MIN_BYTES) {
      const result = await thread.write(this.#fd, source, offsetBytes, DATA_WRITE_PIECE_BYTES);
      if (result === source.length) return;
      if (result < 0) throw this.#writeError(offsetBytes, source.length, -result);
      // NaN: not run (the thread failed); write here.
    }
    this.writeAt(offsetBytes, source);
  }

  #readError(offsetBytes: number, lengthBytes: number, why: string): Error {
    return new Error(`Cannot read ${lengthBytes} bytes at ${offsetBytes} of ${this.#path}: ${why}`);
  }

  #writeError(offsetBytes: number, lengthBytes: number, code: number): Error {
    const message = `Cannot write ${lengthBytes} bytes at ${offsetBytes} of ${this.#path}: ${
      errnoName(code)
    }`;
    return code === ENOSPC ? new OutOfSpaceError(message) : new Error(message);
  }

  readAt(offsetBytes: number, target: Uint8Array): void {
    let done = 0;
    while (done < target.length) {
      const n = Number(
        libc().pread(
          this.#fd,
          target.subarray(done),
          BigInt(target.length - done),
          BigInt(offsetBytes + done),
        ),
      );
      if (n < 0) {
        const code = errno();
        if (code === EINTR) continue;
        throw this.#readError(offsetBytes, target.length, errnoName(code));
      }
      if (n === 0) throw this.#readError(offsetBytes, target.length, "past the end");
      done += n;
    }
  }

  writeAt(offsetBytes: number, source: Uint8Array): void {
    let done = 0;
    while (done < source.length) {
      const length = Math.min(source.length - done, DATA_WRITE_PIECE_BYTES);
      const n = Number(
        libc().pwrite(
          this.#fd,
          done === 0 && length === source.length ? source : source.subarray(done, done + length),
          BigInt(length),
          BigInt(offsetBytes + done),
        ),
      );
      if (n < 0) {
        const code = errno();
        if (code === EINTR) continue;
        throw this.#writeError(offsetBytes, source.length, code);
      }
      done += n;
    }
  }

  copy(fromBytes: number, toBytes: number, lengthBytes: number, scratch: Uint8Array): void {
    if (this.#kernelCopy && lengthBytes >= KERNEL_COPY_MIN_BYTES) {
      const offsets = this.#copyOffsets;
      offsets[0] = BigInt(fromBytes);
      offsets[1] = BigInt(toBytes);
      const inOffset = new Uint8Array(offsets.buffer, 0, 8);
      const outOffset = new Uint8Array(offsets.buffer, 8, 8);
      let done = 0;
      while (done < lengthBytes) {
        const n = Number(
          libc().copy_file_range(
            this.#fd,
            inOffset,
            this.#fd,
            outOffset,
            BigInt(lengthBytes - done),
            0,
          ),
        );
        if (n > 0) {
          done += n;
          continue;
        }
        const code = n < 0 ? errno() : 0;
        if (code === EINTR) continue;
        if (n === 0 || code === ENOSPC) {
          const why = n === 0 ? "past the end" : errnoName(code);
          const message =
            `Cannot copy ${lengthBytes} bytes from ${fromBytes} to ${toBytes} of ${this.#path}: ${why}`;
          throw code === ENOSPC ? new OutOfSpaceError(message) : new Error(message);
        }
        // Not supported here (old kernel, filesystem, seccomp): copy through memory from now on.
        this.#kernelCopy = false;
        copyThrough(this, fromBytes + done, toBytes + done, lengthBytes - done, scratch);
        return;
      }
      return;
    }
    copyThrough(this, fromBytes, toBytes, lengthBytes, scratch);
  }

  startWriteback(): void {
    // One at a time: pages dirtied meanwhile go with the next one.
    if (this.#writeback !== null) return;
    // offset 0, nbytes 0: the whole file. Errors only lose the hint.
    const done = () => {
      this.#writeback = null;
    };
    this.#writeback = libc().sync_file_range(this.#fd, 0n, 0n, SYNC_FILE_RANGE_WRITE).then(
      done,
      done,
    );
  }

  async idle(): Promise<void> {
    await this.#writeback;
  }

  release(): void {
    this.#thread?.release();
    this.#thread = null;
    libc().close(this.#fd);
  }
}

/** Copies a range of one file through a buffer, a scratch-sized piece at a time. */
function copyThrough(
  io: PositionedIo,
  fromBytes: number,
  toBytes: number,
  lengthBytes: number,
  scratch: Uint8Array,
): void {
  for (let done = 0; done < lengthBytes; done += scratch.length) {
    const piece = scratch.subarray(0, Math.min(scratch.length, lengthBytes - done));
    io.readAt(fromBytes + done, piece);
    io.writeAt(toBytes + done, piece);
  }
}

/** A `MAP_SHARED` mapping of the whole file. */
class MmapIo implements PositionedIo {
  readonly offloads = false;
  #pointer: Deno.PointerObject;
  #lengthBytes: number;
  #bytes: Uint8Array;

  constructor(path: string, lengthBytes: number) {
    const fd = openFd(path);
    try {
      const pointer = libc().mmap(null, BigInt(lengthBytes), PROT_READ_WRITE, MAP_SHARED, fd, 0n);
      // MAP_FAILED is (void*)-1.
      if (pointer === null || Deno.UnsafePointer.value(pointer) === 0xffff_ffff_ffff_ffffn) {
        throw new Error(`Cannot map ${lengthBytes} bytes of ${path}: ${errnoName(errno())}`);
      }
      this.#pointer = pointer;
    } finally {
      libc().close(fd);
    }
    this.#lengthBytes = lengthBytes;
    this.#bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(this.#pointer, lengthBytes));
  }

  readAt(offsetBytes: number, target: Uint8Array): void {
    target.set(this.#bytes.subarray(offsetBytes, offsetBytes + target.length));
  }

  readNow(offsetBytes: number, target: Uint8Array): boolean {
    this.readAt(offsetBytes, target);
    return true;
  }

  writeAt(offsetBytes: number, source: Uint8Array): void {
    this.#bytes.set(source, offsetBytes);
  }

  async readAtAsync(offsetBytes: number, target: Uint8Array): Promise<void> {
    this.readAt(offsetBytes, target);
  }

  async writeAtAsync(offsetBytes: number, source: Uint8Array): Promise<void> {
    this.writeAt(offsetBytes, source);
  }

  copy(fromBytes: number, toBytes: number, lengthBytes: number): void {
    this.#bytes.copyWithin(toBytes, fromBytes, fromBytes + lengthBytes);
  }

  startWriteback(): void {
    // The kernel writes a shared mapping back on its own schedule.
  }

  idle(): Promise<void> {
    return Promise.resolve();
  }

  release(): void {
    // The view dangles after munmap: drop it first.
    this.#bytes = new Uint8Array(0);
    libc().munmap(this.#pointer, BigInt(this.#lengthBytes));
  }
}

/** `Deno.FsFile` seek + read/write, synchronous. */
class FsFileIo implements PositionedIo {
  readonly offloads = false;
  #file: Deno.FsFile;
  #path: string;

  constructor(file: Deno.FsFile, path: string) {
    this.#file = file;
    this.#path = path;
  }

  readAt(offsetBytes: number, target: Uint8Array): void {
    this.#file.seekSync(offsetBytes, Deno.SeekMode.Start);
    let done = 0;
    while (done < target.length) {
      const n = this.#file.readSync(target.subarray(done));
      if (n === null || n === 0) {
        throw new Error(
          `Cannot read ${target.length} bytes at ${offsetBytes} of ${this.#path}: past the end`,
        );
      }
      done += n;
    }
  }

  readNow(offsetBytes: number, target: Uint8Array): boolean {
    this.readAt(offsetBytes, target);
    return true;
  }

  writeAt(offsetBytes: number, source: Uint8Array): void {
    this.#file.seekSync(offsetBytes, Deno.SeekMode.Start);
    let done = 0;
    while (done < source.length) done += this.#file.writeSync(source.subarray(done));
  }

  async readAtAsync(offsetBytes: number, target: Uint8Array): Promise<void> {
    this.readAt(offsetBytes, target);
  }

  async writeAtAsync(offsetBytes: number, source: Uint8Array): Promise<void> {
    this.writeAt(offsetBytes, source);
  }

  copy(fromBytes: number, toBytes: number, lengthBytes: number, scratch: Uint8Array): void {
    copyThrough(this, fromBytes, toBytes, lengthBytes, scratch);
  }

  startWriteback(): void {
    // Deno.FsFile has no such call; the fdatasync of flush() does it all.
  }

  idle(): Promise<void> {
    return Promise.resolve();
  }

  release(): void {
    // The store closes the file itself.
  }
}

// ---------------------------------------------------------------------------
// Header

interface Header {
  blockSizeBytes: number;
  sectorSizeBytes: number;
  recordSizeBytes: number;
  numSlots: number;
}

function encodeHeader(header: Header): Uint8Array {
  const bytes = new Uint8Array(HEADER_COPY_SIZE_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode(INDEX_MAGIC), 0);
  view.setUint32(8, INDEX_FORMAT_VERSION, true);
  view.setUint32(12, header.blockSizeBytes, true);
  view.setUint32(16, header.sectorSizeBytes, true);
  view.setUint32(20, header.recordSizeBytes, true);
  writeU64(view, 24, header.numSlots);
  view.setUint32(
    HEADER_CRC_OFFSET_BYTES,
    crc32(bytes.subarray(0, HEADER_CRC_OFFSET_BYTES)),
    true,
  );
  return bytes;
}

/** Decodes one header copy, with its format version; undefined when it is not a valid header. */
function decodeHeader(
  bytes: Uint8Array,
  where: string,
): Header & { version: number } | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_COPY_SIZE_BYTES);
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== INDEX_MAGIC) return undefined;
  if (
    crc32(bytes.subarray(0, HEADER_CRC_OFFSET_BYTES)) !==
      view.getUint32(HEADER_CRC_OFFSET_BYTES, true)
  ) {
    return undefined;
  }
  const version = view.getUint32(8, true);
  if (!INDEX_FORMAT_VERSIONS_READ.includes(version)) {
    throw new TorusError(
      `Cannot open ${where}: it has format version ${version}; this Torus reads versions ${
        INDEX_FORMAT_VERSIONS_READ.join(" and ")
      }`,
    );
  }
  return {
    version,
    blockSizeBytes: view.getUint32(12, true),
    sectorSizeBytes: view.getUint32(16, true),
    recordSizeBytes: view.getUint32(20, true),
    numSlots: readU64(view, 24),
  };
}

// ---------------------------------------------------------------------------
// Open-time helpers (not hot paths: Deno.FsFile is enough)

function readFully(file: Deno.FsFile, offsetBytes: number, target: Uint8Array, path: string): void {
  new FsFileIo(file, path).readAt(offsetBytes, target);
}

function writeFully(
  file: Deno.FsFile,
  offsetBytes: number,
  source: Uint8Array,
  path: string,
): void {
  new FsFileIo(file, path).writeAt(offsetBytes, source);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Writes both header copies, each made durable before the next is touched. */
async function writeHeaders(file: Deno.FsFile, header: Header, path: string): Promise<void> {
  const bytes = encodeHeader(header);
  for (const offset of HEADER_COPY_OFFSETS_BYTES) {
    writeFully(file, offset, bytes, path);
    await file.sync();
  }
}

interface Entry {
  ref: BlockRef;
  slot: number;
}

/** A delta being merged into its lender's slot by `flush()`. */
interface Merge {
  lender: number;
  borrower: number;
  ref: BlockRef;
  /** The borrower's write count when its sectors were copied. */
  writes: number;
  /**
   * The lender's remaining sectors were copied into the borrower's slot (which
   * keeps the block, and the lender's slot is freed), not the borrower's own
   * sectors into the lender's.
   */
  absorb: boolean;
}

/** Everything {@linkcode FileBlockStore.open} prepares for the constructor. */
interface OpenState {
  directory: string;
  blockSizeBytes: number;
  numSlots: number;
  lock: Deno.FsFile;
  dataFile: Deno.FsFile;
  indexFile: Deno.FsFile;
  deltaFile: Deno.FsFile;
  data: PositionedIo;
  index: PositionedIo;
  deltas: PositionedIo;
  /** The stored blocks; a packed delta's slot is `numSlots` + its record in `delta.blk`. */
  entries: Map<string, Entry>;
  /** Sector CRCs of every slot, then of every packed delta record (`sectorsPerBlock` each). */
  crcs: Uint32Array;
  /** The slot each delta borrows from, -1 for whole blocks; slots, then packed delta records. */
  lenders: Int32Array;
  /** Owned-sector bitmaps of the deltas; slots, then packed delta records. */
  owned: Uint32Array;
  /** Where each packed delta record's owned sectors are in the data file, as sector numbers. */
  heapSectors: Uint32Array;
  /** Records of `delta.blk`. */
  numDeltas: number;
  generation: number;
}

/**
 * The durable BlockStore: fixed-size slots in `data.blk`, one checksummed
 * record per slot in `index.blk`, an in-memory map from ref to slot and a
 * stack of free slots. One process at a time: the directory is locked.
 *
 * @example Usage
 * ```ts ignore
 * import { FileBlockStore } from "./file_block_store.ts";
 * import { BlockRef, BlockType } from "../core/block_ref.ts";
 * const store = await FileBlockStore.open({
 *   directory: "/var/lib/torus/block",
 *   blockSizeBytes: 512 * 1024,
 *   sizeBytes: 1024 ** 3,
 * });
 * await store.writeBlock(new BlockRef(1, BlockType.data, 1, 1), new Uint8Array([1, 2, 3]));
 * await store.flush();
 * await store.close();
 * ```
 */
export class FileBlockStore implements BlockStore {
  /** The engine name. */
  readonly kind = "file";
  /** Size of every block. */
  readonly blockSizeBytes: number;
  #directory: string;
  #numSlots: number;
  #sectorSizeBytes: number;
  #sectorsPerBlock: number;
  #recordSizeBytes: number;
  #lock: Deno.FsFile;
  #dataFile: Deno.FsFile;
  #indexFile: Deno.FsFile;
  #deltaFile: Deno.FsFile;
  #data: PositionedIo;
  #index: PositionedIo;
  /** Records of `delta.blk`: packed deltas, the virtual slots from `#numSlots` on. */
  #deltas: PositionedIo;
  #numDeltas: number;
  /** Most sectors a new packed delta may own; 0 when this store makes none. */
  #packedMax: number;
  #entries: Map<string, Entry>;
  /** Free slots, a stack: the lowest free slot is on top after open. */
  #free: Uint32Array;
  #freeCount = 0;
  /** Free records of `delta.blk`, as virtual slots; the lowest on top after open. */
  #deltaFree: Uint32Array;
  #deltaFreeCount = 0;
  /**
   * The data-file sector of each owned sector of each packed delta record
   * (`sectorsPerBlock` per record), or `NO_HEAP_SECTOR`. Those sectors lie in
   * *heap slots*: slots taken off the free stack and shared sector by sector.
   */
  #heapSectors: Uint32Array;
  /** Per slot, the bitmap of its heap sectors in use (`#words` per slot). */
  #heapUsed: Uint32Array;
  /** Per slot, how many of its sectors are heap sectors in use; > 0 marks a heap slot. */
  #heapLive: Uint16Array;
  /** Heap slots with a free sector. */
  #heapPartial = new Set<number>();
  /** Free sectors in heap slots. */
  #heapFreeSectors = 0;
  /** Whether records were written to `delta.blk` since its last fdatasync. */
  #deltasUnsynced = false;
  #generation: number;
  #closed = false;
  /** Flushes in flight, which `close()` waits for. */
  #flushes = new Set<Promise<void>>();
  /** Reads and writes on the I/O thread, which `close()` waits for (they never reject). */
  #offloaded = new Set<Promise<void>>();
  /** Whole-block writes on the I/O thread, by ref key: not installed until they land. */
  #writing = new Map<string, Promise<void>>();
  /**
   * The sector CRCs of every slot, `sectorsPerBlock` per slot: the index in
   * memory (4 bytes per 4 KiB sector, 0.1% of the store). Reads verify
   * against it without touching the index file.
   */
  #crcs: Uint32Array;
  /** The ref stored in each slot (and packed delta record), or undefined when it is free. */
  #slotRefs: (BlockRef | undefined)[];
  /** Slots whose record changed since the last flush; written by `flush()`. */
  #dirty = new Set<number>();
  /** u32 words of an owned-sector bitmap. */
  #words: number;
  /** The slot each delta borrows its unowned sectors from; -1 for whole blocks. */
  #lenders: Int32Array;
  /** The owned-sector bitmap of each delta, `#words` per slot. */
  #owned: Uint32Array;
  /** The deltas borrowing from each lent slot. A lent slot is never a delta itself. */
  #borrowers = new Map<number, Set<number>>();
  /** Deltas stored now. */
  #deltaCount = 0;
  /** Lent slots of deleted blocks with a single borrower: `flush()` merges it into them. */
  #mergeable = new Set<number>();
  /** Writes to each slot's data, so a merge notices one made while it waited. */
  #slotWrites: Uint32Array;
  /** Bytes written to the data file since writeback was last started. */
  #unkickedBytes = 0;
  /** Scratch buffers: every operation runs synchronously up to its first await. */
  #block: Uint8Array;
  #record: Uint8Array;
  #recordView: DataView;
  #zeroRecord: Uint8Array;
  /** Where the copies of sector CRCs that reads and writes return are carved from. */
  #crcCopies = new Slab();

  private constructor(state: OpenState) {
    this.blockSizeBytes = state.blockSizeBytes;
    this.#directory = state.directory;
    this.#numSlots = state.numSlots;
    this.#numDeltas = state.numDeltas;
    this.#sectorSizeBytes = sectorSizeBytes(state.blockSizeBytes);
    this.#sectorsPerBlock = state.blockSizeBytes / this.#sectorSizeBytes;
    this.#recordSizeBytes = indexRecordSizeBytes(state.blockSizeBytes);
    // Heap sectors are addressed as u32 in the records.
    this.#packedMax =
      state.numDeltas > 0 && state.numSlots * this.#sectorsPerBlock <= HEAP_SECTORS_MAX
        ? packedDeltaSectorsMax(state.blockSizeBytes)
        : 0;
    this.#lock = state.lock;
    this.#dataFile = state.dataFile;
    this.#indexFile = state.indexFile;
    this.#deltaFile = state.deltaFile;
    this.#data = state.data;
    this.#index = state.index;
    this.#deltas = state.deltas;
    this.#entries = state.entries;
    this.#generation = state.generation;
    const slots = state.numSlots;
    const total = slots + state.numDeltas;
    const sectors = this.#sectorsPerBlock;
    this.#free = new Uint32Array(slots);
    this.#deltaFree = new Uint32Array(state.numDeltas);
    this.#words = ownedWords(state.blockSizeBytes);
    this.#lenders = state.lenders;
    this.#owned = state.owned;
    this.#heapSectors = state.heapSectors;
    this.#heapUsed = new Uint32Array(slots * this.#words);
    this.#heapLive = new Uint16Array(slots);
    this.#slotWrites = new Uint32Array(total);
    this.#slotRefs = new Array(total);
    for (const entry of state.entries.values()) this.#slotRefs[entry.slot] = entry.ref;
    const used = new Uint8Array(slots);
    for (const entry of state.entries.values()) if (entry.slot < slots) used[entry.slot] = 1;
    for (let slot = 0; slot < total; slot++) {
      const lender = this.#lenders[slot]!;
      if (lender < 0) continue;
      assert(this.#slotRefs[slot] !== undefined, `slot ${slot} has a lender but no block`);
      used[lender] = 1;
      this.#lend(lender, slot);
    }
    for (const heapSector of this.#heapSectors) {
      if (heapSector === NO_HEAP_SECTOR) continue;
      const slot = Math.floor(heapSector / sectors);
      const index = heapSector % sectors;
      assert(!used[slot], `heap sector ${heapSector} lies in a slot in use`);
      if (this.#heapLive[slot] === 0) this.#enterHeap(slot);
      this.#heapUsed[slot * this.#words + (index >>> 5)]! |= 1 << (index & 31);
      this.#heapLive[slot]!++;
    }
    for (let slot = 0; slot < slots; slot++) {
      const live = this.#heapLive[slot]!;
      if (live === 0) continue;
      used[slot] = 1;
      this.#heapFreeSectors += sectors - live;
      if (live === sectors) this.#heapPartial.delete(slot);
    }
    for (let slot = slots - 1; slot >= 0; slot--) {
      if (!used[slot]) this.#free[this.#freeCount++] = slot;
    }
    for (let slot = total - 1; slot >= slots; slot--) {
      if (this.#slotRefs[slot] === undefined) this.#deltaFree[this.#deltaFreeCount++] = slot;
    }
    this.#block = new Uint8Array(state.blockSizeBytes);
    this.#record = new Uint8Array(this.#recordSizeBytes);
    this.#recordView = new DataView(this.#record.buffer);
    this.#zeroRecord = new Uint8Array(this.#recordSizeBytes);
    this.#crcs = state.crcs;
    for (const [lender, borrowers] of this.#borrowers) {
      if (this.#slotRefs[lender] === undefined && borrowers.size === 1) this.#mergeable.add(lender);
    }
  }

  /**
   * Opens the store in `options.directory`, creating it when missing, growing
   * or shrinking it to `options.sizeBytes`, and loading its index.
   *
   * @throws {TorusError} when another process holds the store, when the block
   *   size differs from the stored one, or when the stored blocks do not fit
   *   in a smaller size.
   * @throws {SyntaxError} when both header copies of the index are damaged.
   * @throws {RangeError} on a block size or size the engine cannot use.
   */
  static async open(options: FileBlockStoreOptions): Promise<FileBlockStore> {
    const { directory, blockSizeBytes, sizeBytes } = options;
    const io = options.io ?? "pread";
    if (
      !Number.isSafeInteger(blockSizeBytes) || blockSizeBytes < BLOCK_SIZE_BYTES_MIN ||
      blockSizeBytes > BLOCK_SIZE_BYTES_MAX ||
      blockSizeBytes % sectorSizeBytes(blockSizeBytes) !== 0
    ) {
      throw new RangeError(
        `Cannot open block store in ${directory}: block size ${blockSizeBytes} is not a whole number of sectors between ${BLOCK_SIZE_BYTES_MIN} and ${BLOCK_SIZE_BYTES_MAX} bytes`,
      );
    }
    const numSlots = Number.isSafeInteger(sizeBytes) ? Math.floor(sizeBytes / blockSizeBytes) : 0;
    if (numSlots < 1) {
      throw new RangeError(
        `Cannot open block store in ${directory}: size ${sizeBytes} bytes holds no block of ${blockSizeBytes} bytes`,
      );
    }

    await Deno.mkdir(directory, { recursive: true, mode: STORE_DIRECTORY_MODE });
    const lock = await Deno.open(directory, { read: true });
    let locked = false;
    try {
      locked = await lock.tryLock(true);
    } finally {
      if (!locked) lock.close();
    }
    if (!locked) {
      throw new TorusError(
        `Cannot open block store in ${directory}: it is in use by another process (is torusd running?)`,
      );
    }

    const opened: (Deno.FsFile | PositionedIo)[] = [];
    try {
      const dataPath = `${directory}/${DATA_FILE_NAME}`;
      const indexPath = `${directory}/${INDEX_FILE_NAME}`;
      const deltaPath = `${directory}/${DELTA_FILE_NAME}`;
      const recordSizeBytes = indexRecordSizeBytes(blockSizeBytes);
      const wanted: Header = {
        blockSizeBytes,
        sectorSizeBytes: sectorSizeBytes(blockSizeBytes),
        recordSizeBytes,
        numSlots,
      };
      if (!(await exists(indexPath))) await create(directory, lock, wanted);

      if (!(await exists(dataPath))) {
        throw new TorusError(
          `Cannot open block store in ${directory}: ${DATA_FILE_NAME} is missing (the store is damaged)`,
        );
      }
      const dataFile = await Deno.open(dataPath, { read: true, write: true });
      opened.push(dataFile);
      const indexFile = await Deno.open(indexPath, { read: true, write: true });
      opened.push(indexFile);

      const { header, agree, version } = readHeader(indexFile, indexPath);
      if (header.blockSizeBytes !== blockSizeBytes) {
        throw new TorusError(
          `Cannot open block store in ${directory}: it holds blocks of ${header.blockSizeBytes} bytes, not ${blockSizeBytes} (the block size of a store cannot change)`,
        );
      }
      if (
        header.recordSizeBytes !== recordSizeBytes ||
        header.sectorSizeBytes !== wanted.sectorSizeBytes
      ) {
        throw new SyntaxError(
          `Cannot open block store in ${directory}: ${INDEX_FILE_NAME} has records of ${header.recordSizeBytes} bytes and sectors of ${header.sectorSizeBytes} bytes, expected ${recordSizeBytes} and ${wanted.sectorSizeBytes}`,
        );
      }
      if (version < INDEX_FORMAT_VERSION) {
        // Before version 3: no packed deltas yet. The header says version 3
        // (below) only once the file exists.
        await createDeltaFile(deltaPath, header);
        await lock.sync();
      } else if (!(await exists(deltaPath))) {
        throw new TorusError(
          `Cannot open block store in ${directory}: ${DELTA_FILE_NAME} is missing (the store is damaged)`,
        );
      }
      const deltaFile = await Deno.open(deltaPath, { read: true, write: true });
      opened.push(deltaFile);
      await fitFiles(directory, dataFile, indexFile, deltaFile, header);
      if (!agree) await writeHeaders(indexFile, header, indexPath);

      const layout = {
        directory,
        dataFile,
        indexFile,
        deltaFile,
        header,
        dataPath,
        indexPath,
        deltaPath,
      };
      const scan = await scanIndex(layout);
      if (numSlots > header.numSlots) {
        await grow(layout, numSlots);
      } else if (numSlots < header.numSlots) {
        scan.generation = await shrink(layout, scan, numSlots);
      }
      // Slots first, then one virtual slot per record of delta.blk.
      const sectorsPerSlot = blockSizeBytes / wanted.sectorSizeBytes;
      const words = ownedWords(blockSizeBytes);
      const numDeltas = deltaRecordCount(blockSizeBytes, numSlots);
      const total = numSlots + numDeltas;
      const crcs = new Uint32Array(total * sectorsPerSlot);
      crcs.set(scan.crcs.subarray(0, numSlots * sectorsPerSlot));
      // A shrink left no packed delta: the records past the new count are free.
      const kept = Math.min(numDeltas, scan.deltaLenders.length);
      crcs.set(scan.deltaCrcs.subarray(0, kept * sectorsPerSlot), numSlots * sectorsPerSlot);
      const lenders = new Int32Array(total).fill(-1);
      lenders.set(scan.lenders.subarray(0, Math.min(numSlots, scan.lenders.length)));
      lenders.set(scan.deltaLenders.subarray(0, kept), numSlots);
      const owned = new Uint32Array(total * words);
      owned.set(scan.owned.subarray(0, Math.min(numSlots * words, scan.owned.length)));
      owned.set(scan.deltaOwned.subarray(0, kept * words), numSlots * words);
      const heapSectors = new Uint32Array(numDeltas * sectorsPerSlot).fill(NO_HEAP_SECTOR);
      heapSectors.set(scan.heapSectors.subarray(0, kept * sectorsPerSlot));
      for (const entry of scan.entries.values()) {
        if (entry.slot < 0) entry.slot = numSlots + (-1 - entry.slot);
      }

      let data: PositionedIo;
      let index: PositionedIo;
      const indexBytes = INDEX_HEADER_REGION_BYTES + numSlots * recordSizeBytes;
      if (io === "mmap") {
        data = new MmapIo(dataPath, numSlots * blockSizeBytes);
        opened.push(data);
        index = new MmapIo(indexPath, indexBytes);
      } else if (io === "fsfile") {
        data = new FsFileIo(dataFile, dataPath);
        index = new FsFileIo(indexFile, indexPath);
      } else {
        data = new PreadIo(dataPath, blockSizeBytes >= IO_THREAD_MIN_BYTES, io === "pread");
        opened.push(data);
        index = new PreadIo(indexPath);
      }
      opened.push(index);
      // Records only, written one at a time: positioned I/O is enough.
      const deltas = io === "fsfile" ? new FsFileIo(deltaFile, deltaPath) : new PreadIo(deltaPath);
      opened.push(deltas);
      return new FileBlockStore({
        directory,
        blockSizeBytes,
        numSlots,
        lock,
        dataFile,
        indexFile,
        deltaFile,
        data,
        index,
        deltas,
        entries: scan.entries,
        crcs,
        lenders,
        owned,
        heapSectors,
        numDeltas,
        generation: scan.generation,
      });
    } catch (error) {
      for (const resource of opened) {
        if (resource instanceof Deno.FsFile) resource.close();
        else resource.release();
      }
      // Released explicitly, not left to the descriptor's close: a caller
      // that retries at once must find the store free.
      await lock.unlock().catch(() => {});
      lock.close();
      throw error;
    }
  }

  /** The store directory. */
  get directory(): string {
    return this.#directory;
  }

  numBlocks(): number {
    return this.#numSlots;
  }

  /** Slots in use: stored blocks, and the slots of deleted blocks that deltas still borrow from. */
  usedBlocks(): number {
    return this.#numSlots - this.#freeCount;
  }

  /** Blocks stored as deltas (sharing sectors with the block they were copied from). */
  deltaBlocks(): number {
    return this.#deltaCount;
  }

  async hasBlock(ref: BlockRef): Promise<boolean> {
    this.#checkOpen("read");
    return this.#entries.has(ref.key());
  }

  async readBlock(
    ref: BlockRef,
    range?: BlockRange,
    _expectDigest?: number,
    into?: Uint8Array,
  ): Promise<BlockRead> {
    this.#checkOpen("read");
    const { offsetBytes, lengthBytes } = checkRange(this.blockSizeBytes, range);
    for (let w = this.#inFlightWrite(ref); w; w = this.#inFlightWrite(ref)) await w;
    this.#checkOpen("read");
    let entry = this.#get(ref, "read");
    const sector = this.#sectorSizeBytes;
    if (into !== undefined && this.#wholeSectors(offsetBytes, lengthBytes, into)) {
      const now = this.#readNow(entry, offsetBytes, into);
      if (now !== null) return now;
      // A block stored whole whose bytes the page cache lacks: the disk is
      // waited for on the I/O thread.
      const read = await this.#readOffloaded(ref, entry, offsetBytes, into);
      if (read !== null) return read;
      entry = this.#get(ref, "read");
      this.#readSectors(entry.slot, offsetBytes / sector, into);
      this.#verifySectors(entry, offsetBytes / sector, into);
      return { data: into, sectorCrcs: this.#slotCrcs(entry.slot) };
    }
    const first = Math.min(Math.floor(offsetBytes / sector), this.#sectorsPerBlock - 1);
    const end = Math.max(first + 1, Math.ceil((offsetBytes + lengthBytes) / sector));
    const bytes = new Uint8Array((end - first) * sector);
    this.#readSectors(entry.slot, first, bytes);
    this.#verifySectors(entry, first, bytes);
    const start = offsetBytes - first * sector;
    const data = start === 0 && lengthBytes === bytes.length
      ? bytes
      : bytes.slice(start, start + lengthBytes);
    return { data, sectorCrcs: this.#slotCrcs(entry.slot) };
  }

  /**
   * {@linkcode readBlock} without waiting: the block's whole sectors `range`
   * covers, read into `into` and verified, when that needs neither the disk
   * nor a write in flight to land; null otherwise (and for a block not
   * stored, or a closed store: {@linkcode readBlock} then says why).
   *
   * @throws {BlockCorruptError} when a sector read fails its checksum.
   * @throws {RangeError} when `range` is outside the block.
   */
  readBlockNow(ref: BlockRef, range: BlockRange, into: Uint8Array): BlockRead | null {
    if (this.#closed) return null;
    const { offsetBytes, lengthBytes } = checkRange(this.blockSizeBytes, range);
    if (!this.#wholeSectors(offsetBytes, lengthBytes, into)) return null;
    if (this.#inFlightWrite(ref) !== undefined) return null;
    const entry = this.#entries.get(ref.key());
    return entry === undefined ? null : this.#readNow(entry, offsetBytes, into);
  }

  /** Whether a read of `lengthBytes` at `offsetBytes` is whole sectors that fill `into` exactly. */
  #wholeSectors(offsetBytes: number, lengthBytes: number, into: Uint8Array): boolean {
    const sector = this.#sectorSizeBytes;
    return into.length === lengthBytes && lengthBytes > 0 && offsetBytes % sector === 0 &&
      lengthBytes % sector === 0;
  }

  /**
   * Reads whole sectors of `entry` into `into` on the event loop and verifies
   * them; null for a block stored whole whose bytes the page cache lacks
   * (when the store offloads: such a read waits for the disk on the I/O thread).
   */
  #readNow(entry: Entry, offsetBytes: number, into: Uint8Array): BlockRead | null {
    const first = offsetBytes / this.#sectorSizeBytes;
    const whole = this.#data.offloads && entry.slot < this.#numSlots &&
      this.#lenders[entry.slot]! < 0;
    if (!whole) this.#readSectors(entry.slot, first, into);
    else if (!this.#data.readNow(entry.slot * this.blockSizeBytes + offsetBytes, into)) return null;
    this.#verifySectors(entry, first, into);
    return { data: into, sectorCrcs: this.#slotCrcs(entry.slot) };
  }

  /**
   * A whole-slot read on the I/O thread, verified once it lands; null when
   * the block moved or its slot was written meanwhile (the copy may be torn):
   * the caller then reads again, synchronously.
   */
  async #readOffloaded(
    ref: BlockRef,
    entry: Entry,
    offsetBytes: number,
    into: Uint8Array,
  ): Promise<BlockRead | null> {
    const slot = entry.slot;
    const writes = this.#slotWrites[slot]!;
    const read = this.#data.readAtAsync(slot * this.blockSizeBytes + offsetBytes, into);
    const landed = read.then(() => {}, () => {});
    this.#offloaded.add(landed);
    try {
      await read;
    } finally {
      this.#offloaded.delete(landed);
    }
    if (
      this.#entries.get(ref.key()) !== entry || entry.slot !== slot ||
      this.#slotWrites[slot] !== writes
    ) {
      return null;
    }
    this.#verifySectors(entry, offsetBytes / this.#sectorSizeBytes, into);
    return { data: into, sectorCrcs: this.#slotCrcs(slot) };
  }

  /**
   * A whole-block write of `ref` (or of `other`) in flight on the I/O thread.
   * Callers wait for it in a loop of their own, so that operations waiting
   * for one write resume in the order they were called.
   */
  #inFlightWrite(ref: BlockRef, other?: BlockRef): Promise<void> | undefined {
    if (this.#writing.size === 0) return undefined;
    return this.#writing.get(ref.key()) ??
      (other === undefined ? undefined : this.#writing.get(other.key()));
  }

  async writeBlock(ref: BlockRef, data: Uint8Array, offsetBytes = 0): Promise<Uint32Array> {
    this.#checkOpen("write");
    checkWrite(ref, this.blockSizeBytes, offsetBytes, data.length);
    for (let w = this.#inFlightWrite(ref); w; w = this.#inFlightWrite(ref)) await w;
    this.#checkOpen("write");
    if (
      this.#data.offloads && data.length === this.blockSizeBytes &&
      this.blockSizeBytes >= IO_THREAD_MIN_BYTES && this.#freeCount > 0
    ) {
      return await this.#writeOffloaded(ref, data);
    }
    const slot = this.#slotFor(ref);
    let block = data;
    if (data.length !== this.blockSizeBytes) {
      // Zeros around the data, in the scratch block: no allocation per write.
      block = this.#block;
      block.fill(0, 0, offsetBytes);
      block.set(data, offsetBytes);
      block.fill(0, offsetBytes + data.length);
    }
    // Data first; the record that vouches for it is written by the next flush.
    this.#data.writeAt(slot * this.blockSizeBytes, block);
    this.#wrote(slot, block.length);
    this.#checksumSlot(slot, block);
    if (this.#lenders[slot]! >= 0) this.#unlend(slot); // whole now
    this.#install(ref, slot);
    return this.#slotCrcs(slot);
  }

  /**
   * A whole-block write on the I/O thread, always into a free slot (also when
   * `ref` is stored already): until the data lands, readers find the block
   * as it was, in its old slot, and nothing reads the new one. The slot is
   * taken at once, so that the free-space checks of other writers count it.
   */
  async #writeOffloaded(ref: BlockRef, data: Uint8Array): Promise<Uint32Array> {
    const key = ref.key();
    const slot = this.#free[this.#freeCount - 1]!;
    this.#takeFree(slot);
    assert(this.#lenders[slot]! < 0, `free slot ${slot} is a delta`);
    this.#checksumSlot(slot, data);
    this.#wrote(slot, data.length);
    const write = this.#data.writeAtAsync(slot * this.blockSizeBytes, data);
    const landed = write.then(() => {}, () => {});
    this.#offloaded.add(landed);
    this.#writing.set(key, landed);
    // When `write` settles, `landed` settles first, but the operations waiting
    // for it resume only after this continuation, queued before theirs: the
    // block is installed before they look (so this await stays inline).
    try {
      await write;
    } catch (error) {
      this.#free[this.#freeCount++] = slot;
      throw error;
    } finally {
      this.#offloaded.delete(landed);
      this.#writing.delete(key);
    }
    // Installed also when the store is closing: close() waits for this first.
    this.#install(ref, slot, true);
    return this.#slotCrcs(slot);
  }

  async writeBlockRange(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    this.#checkOpen("write");
    checkRange(this.blockSizeBytes, { offsetBytes, lengthBytes: data.length });
    for (let w = this.#inFlightWrite(ref); w; w = this.#inFlightWrite(ref)) await w;
    this.#checkOpen("write");
    return this.#writeRange(this.#get(ref, "write"), offsetBytes, data, expectDigest);
  }

  writeBlockRangeNow(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array | null {
    if (this.#closed) return null;
    checkRange(this.blockSizeBytes, { offsetBytes, lengthBytes: data.length });
    if (this.#inFlightWrite(ref) !== undefined) return null;
    const entry = this.#entries.get(ref.key());
    return entry === undefined ? null : this.#writeRange(entry, offsetBytes, data, expectDigest);
  }

  /** The body of {@linkcode writeBlockRange}, once no write of the block is in flight. */
  #writeRange(
    entry: Entry,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest: number | undefined,
  ): Uint32Array {
    const ref = entry.ref;
    const crcsAt = entry.slot * this.#sectorsPerBlock;
    if (
      expectDigest !== undefined &&
      blockDigest(this.#crcs.subarray(crcsAt, crcsAt + this.#sectorsPerBlock)) !== expectDigest
    ) {
      throw new BlockCorruptError(`Cannot write to ${ref}: it does not match the expected digest`);
    }
    if (data.length === 0) return this.#slotCrcs(entry.slot);
    if (this.#borrowers.has(entry.slot)) {
      // Deltas share its sectors: the changed block moves to a slot of its own.
      const slot = this.#slotFor(ref);
      this.#copySectors(entry.slot, slot, 0, this.#sectorsPerBlock);
      this.#install(ref, slot);
    } else if (entry.slot >= this.#numSlots) {
      this.#makeRoomInPacked(entry, offsetBytes, data.length);
    }
    this.#patch(entry, entry.slot, offsetBytes, data);
    this.#dirty.add(entry.slot);
    return this.#slotCrcs(entry.slot);
  }

  /**
   * Before packed delta `entry` takes the sectors a write of `lengthBytes` at
   * `offsetBytes` touches: when it would then own more than a packed delta
   * may, it moves to a slot of its own (still a delta if it owns at most
   * half the block, else whole).
   *
   * @throws {OutOfSpaceError} when there is no room for it, and nothing changed.
   */
  #makeRoomInPacked(entry: Entry, offsetBytes: number, lengthBytes: number): void {
    const sector = this.#sectorSizeBytes;
    const first = Math.floor(offsetBytes / sector);
    const end = Math.ceil((offsetBytes + lengthBytes) / sector);
    const packed = entry.slot;
    let adding = 0;
    for (let i = first; i < end; i++) if (!this.#owns(packed, i)) adding++;
    if (adding === 0) return;
    const owned = this.#ownedCount(packed) + adding;
    if (owned <= this.#packedMax) {
      if (adding > this.#heapRoom()) {
        throw new OutOfSpaceError(
          `Cannot write ${entry.ref}: all ${this.#numSlots} blocks of the block store in ${this.#directory} are in use`,
        );
      }
      return;
    }
    const slot = this.#slotFor(entry.ref);
    if (owned <= this.#sectorsPerBlock * DELTA_OWNED_FRACTION_MAX) {
      const lender = this.#lenders[packed]!;
      const words = this.#words;
      this.#owned.copyWithin(slot * words, packed * words, (packed + 1) * words);
      this.#lenders[slot] = lender;
      this.#lend(lender, slot);
      this.#copyOwned(packed, slot, () => true);
      const sectors = this.#sectorsPerBlock;
      this.#crcs.copyWithin(slot * sectors, packed * sectors, (packed + 1) * sectors);
    } else {
      this.#copySectors(packed, slot, 0, this.#sectorsPerBlock);
    }
    this.#install(entry.ref, slot);
  }

  /**
   * Copy-on-write inside the store: `ref` becomes a copy of `source` with
   * `data` at `offsetBytes`. When the copy would own few sectors, it is a
   * delta: only the sectors `data` touches (and those a delta source owned)
   * are written, and the rest are borrowed from the source's slot. Otherwise
   * the unchanged sectors are copied by the kernel (`copy_file_range`, no trip
   * through JavaScript). Either way their CRCs are taken from the source's
   * record, so a sector that was corrupt stays detectably corrupt; only the
   * sectors `data` touches are checksummed anew.
   */
  async copyBlock(
    source: BlockRef,
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    this.#checkOpen("write");
    checkRange(this.blockSizeBytes, { offsetBytes, lengthBytes: data.length });
    if (source.equals(ref)) throw new RangeError(`Cannot copy ${ref} onto itself`);
    for (let w = this.#inFlightWrite(source, ref); w; w = this.#inFlightWrite(source, ref)) {
      await w;
    }
    this.#checkOpen("write");
    return this.#copy(this.#get(source, "copy"), ref, offsetBytes, data, expectDigest);
  }

  copyBlockNow(
    source: BlockRef,
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Uint32Array | null {
    if (this.#closed) return null;
    checkRange(this.blockSizeBytes, { offsetBytes, lengthBytes: data.length });
    if (source.equals(ref)) throw new RangeError(`Cannot copy ${ref} onto itself`);
    if (this.#inFlightWrite(source, ref) !== undefined) return null;
    const from = this.#entries.get(source.key());
    return from === undefined ? null : this.#copy(from, ref, offsetBytes, data, expectDigest);
  }

  /** The body of {@linkcode copyBlock}, once no write of either block is in flight. */
  #copy(
    from: Entry,
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest: number | undefined,
  ): Uint32Array {
    const source = from.ref;
    const sectors = this.#sectorsPerBlock;
    const fromCrcsAt = from.slot * sectors;
    if (
      expectDigest !== undefined &&
      blockDigest(this.#crcs.subarray(fromCrcsAt, fromCrcsAt + sectors)) !== expectDigest
    ) {
      throw new BlockCorruptError(`Cannot copy ${source}: it does not match the expected digest`);
    }
    const sector = this.#sectorSizeBytes;
    // Sectors [first, end) are touched by `data`; the rest keep the source's bytes.
    const first = data.length === 0 ? 0 : Math.floor(offsetBytes / sector);
    const end = data.length === 0 ? 0 : Math.ceil((offsetBytes + data.length) / sector);
    let owned = end - first;
    const catchUp = this.#canCatchUp(from.slot);
    if (this.#lenders[from.slot]! >= 0 && !catchUp) {
      for (let i = 0; i < sectors; i++) {
        if ((i < first || i >= end) && this.#owns(from.slot, i)) owned++;
      }
    }
    // A packed delta when it fits, else a slot: its own, or a free one.
    const packed = owned <= this.#packedMax && this.#deltaFreeCount > 0 &&
      owned <= this.#heapRoom();
    const slot = packed ? this.#deltaFree[this.#deltaFreeCount - 1]! : this.#slotFor(ref);
    if (this.#lenders[slot]! >= 0) this.#unlend(slot);
    try {
      this.#copyInto(from, slot, offsetBytes, data, owned, catchUp);
    } catch (error) {
      // A free slot taken for the copy goes back as it was: not a delta.
      if (this.#slotRefs[slot] === undefined) {
        if (slot >= this.#numSlots) this.#releaseHeap(slot);
        if (this.#lenders[slot]! >= 0) this.#unlend(slot);
      }
      throw error;
    }
    this.#install(ref, slot);
    return this.#slotCrcs(slot);
  }

  /**
   * Whether a copy of the block in `slot` may first bring its lender up to
   * date: `slot` is a delta, and the block its lender held is deleted and
   * nothing else borrows from it, so no one reads the lender's sectors that
   * `slot` owns. Copying them there makes the lender hold this block whole
   * (a merge without the move), and the copy then borrows every sector it
   * does not change from the lender instead of copying the delta's own: a
   * block changed in one write session after another stays a small delta
   * of its original slot instead of growing by every session's sectors.
   */
  #canCatchUp(slot: number): boolean {
    const lender = this.#lenders[slot]!;
    return lender >= 0 && this.#slotRefs[lender] === undefined &&
      this.#borrowers.get(lender)?.size === 1;
  }

  /**
   * The bytes and bookkeeping of {@linkcode copyBlock}: `slot` becomes `from`
   * patched with `data`, owning `owned` sectors if it is a delta; with
   * `catchUp` (see {@linkcode #canCatchUp}) a delta borrows from `from`'s
   * lender brought up to date.
   */
  #copyInto(
    from: Entry,
    slot: number,
    offsetBytes: number,
    data: Uint8Array,
    owned: number,
    catchUp: boolean,
  ): void {
    const sectors = this.#sectorsPerBlock;
    const fromCrcsAt = from.slot * sectors;
    const sector = this.#sectorSizeBytes;
    const first = data.length === 0 ? 0 : Math.floor(offsetBytes / sector);
    const end = data.length === 0 ? 0 : Math.ceil((offsetBytes + data.length) / sector);
    this.#crcs.copyWithin(slot * sectors, fromCrcsAt, fromCrcsAt + sectors);
    const fromLender = this.#lenders[from.slot]!;
    if (slot >= this.#numSlots || owned <= sectors * DELTA_OWNED_FRACTION_MAX) {
      // A delta: own the touched sectors (and the source's own ones, unless
      // they are now in the lender), borrow the rest.
      const lender = fromLender >= 0 ? fromLender : from.slot;
      if (catchUp) {
        // Sectors the copy changes are its own: the lender's stay as they are.
        this.#copyOwned(from.slot, lender, (i) => i < first || i >= end);
      }
      this.#lenders[slot] = lender;
      this.#lend(lender, slot);
      if (fromLender >= 0 && !catchUp) {
        const words = this.#words;
        this.#owned.copyWithin(slot * words, from.slot * words, (from.slot + 1) * words);
        this.#copyOwned(from.slot, slot, (i) => i < first || i >= end);
      }
    } else {
      // The CRCs are copied already.
      this.#copyRuns(0, first, (i) => this.#location(from.slot, i), slot);
      this.#copyRuns(end, sectors, (i) => this.#location(from.slot, i), slot);
    }
    if (end > first) this.#patch(from, slot, offsetBytes, data);
  }

  async deleteBlock(ref: BlockRef): Promise<boolean> {
    this.#checkOpen("delete from");
    for (let w = this.#inFlightWrite(ref); w; w = this.#inFlightWrite(ref)) await w;
    this.#checkOpen("delete from");
    const key = ref.key();
    const entry = this.#entries.get(key);
    if (!entry) return false;
    this.#entries.delete(key);
    this.#release(entry.slot);
    return true;
  }

  blockRefs(): BlockRef[] {
    this.#checkOpen("list");
    return [...this.#entries.values()].map((entry) => entry.ref);
  }

  /**
   * Writes the changed records, fdatasyncs the data file, then the index
   * file, and merges deltas into the lent slots of deleted blocks.
   */
  async flush(): Promise<void> {
    this.#checkOpen("flush");
    const sync = this.#flushAndMerge();
    this.#flushes.add(sync);
    try {
      await sync;
    } finally {
      this.#flushes.delete(sync);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      // Reads and writes on the I/O thread land first: their blocks are flushed too.
      while (this.#offloaded.size > 0) await Promise.all(this.#offloaded);
      // Flushes in flight keep their descriptors until they settle.
      await Promise.allSettled(this.#flushes);
      await this.#sync();
    } finally {
      await Promise.all([this.#data.idle(), this.#index.idle(), this.#deltas.idle()]);
      this.#data.release();
      this.#index.release();
      this.#deltas.release();
      this.#dataFile.close();
      this.#indexFile.close();
      this.#deltaFile.close();
      this.#entries.clear();
      // Unlocked explicitly, as a refused open does: closing the descriptor
      // alone can release the lock later, and a reopen at once must find it free.
      await this.#lock.unlock().catch(() => {});
      this.#lock.close();
    }
  }

  /**
   * Writes the changed records, then fdatasyncs the data file, then the
   * index file. A record reaching the disk before its data (the kernel may
   * write back in any order) vouches for sectors whose CRCs do not match:
   * such a block reads as `BlockCorruptError`, never as wrong bytes, and only
   * unflushed writes can be torn that way.
   */
  async #sync(): Promise<void> {
    this.#writeDirtyRecords();
    await this.#dataFile.syncData();
    await this.#syncRecords();
  }

  /** fdatasyncs `index.blk`, and `delta.blk` when records were written to it since its last one. */
  async #syncRecords(): Promise<void> {
    if (!this.#deltasUnsynced) {
      await this.#indexFile.syncData();
      return;
    }
    this.#deltasUnsynced = false;
    try {
      await Promise.all([this.#indexFile.syncData(), this.#deltaFile.syncData()]);
    } catch (error) {
      this.#deltasUnsynced = true;
      throw error;
    }
  }

  /**
   * A flush that also merges deltas into the lent slots of deleted blocks:
   * their own sectors are copied into the lender's slot before the data
   * fdatasync; once that is durable the lender's record names the block
   * (and is made durable), and only then is the delta's own slot freed. A
   * crash at any step leaves the block readable from one of the two slots:
   * the one with the newer record wins at open.
   */
  async #flushAndMerge(): Promise<void> {
    const merges = await this.#startMerges();
    await this.#sync();
    if (merges.length === 0) return;
    const merged = this.#finishMerges(merges);
    if (merged.length === 0) return;
    this.#writeDirtyRecords();
    await this.#syncRecords();
    for (const slot of merged) {
      this.#dirty.add(slot);
      if (slot < this.#numSlots) {
        this.#free[this.#freeCount++] = slot;
      } else {
        // A packed delta's heap sectors too stayed put until now.
        this.#releaseHeap(slot);
        this.#deltaFree[this.#deltaFreeCount++] = slot;
      }
    }
  }

  /**
   * Copies the own sectors of each mergeable delta into its lender's slot,
   * or, when that copies fewer sectors, the lender's remaining sectors into
   * the delta's own slot (an absorbing merge).
   */
  async #startMerges(): Promise<Merge[]> {
    const merges: Merge[] = [];
    const sectors = this.#sectorsPerBlock;
    const lenders = [...this.#mergeable];
    this.#mergeable.clear();
    let copied = 0;
    for (const lender of lenders) {
      const borrowers = this.#borrowers.get(lender);
      if (
        borrowers === undefined || borrowers.size !== 1 || this.#slotRefs[lender] !== undefined
      ) {
        continue; // changed while an earlier slice yielded: judged again when mergeable
      }
      const [borrower] = borrowers;
      const ref = this.#slotRefs[borrower!];
      assert(borrower !== undefined && ref !== undefined, `lent slot ${lender} has no borrower`);
      const owned = this.#ownedCount(borrower);
      // Whichever copies fewer sectors: a delta with a slot of its own that
      // owns most of its block takes in the lender's few remaining sectors
      // (read from the lender until the merge is finished, so never seen
      // from the borrower's slot before then).
      const absorb = borrower < this.#numSlots && sectors - owned < owned;
      if (absorb) {
        this.#copyRuns(0, sectors, (i) => this.#owns(borrower, i) ? -1 : lender, borrower);
        copied += (sectors - owned) * this.#sectorSizeBytes;
      } else {
        this.#copyOwned(borrower, lender, () => true);
        this.#crcs.copyWithin(lender * sectors, borrower * sectors, (borrower + 1) * sectors);
        copied += owned * this.#sectorSizeBytes;
      }
      // Read after the copy, which counts as a write when it lands in the borrower's slot.
      merges.push({ lender, borrower, ref, writes: this.#slotWrites[borrower]!, absorb });
      if (copied >= MERGE_SLICE_BYTES) {
        // Let requests run between slices: merging thousands of deltas
        // copies hundreds of MiB, a stall of a second in one piece.
        copied = 0;
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    }
    return merges;
  }

  /**
   * Moves each merged block to its lender's slot (or, absorbing, makes it
   * whole in its own), unless it changed since its sectors were copied (then
   * the lender waits for the next flush). Returns the slots given up (the
   * ones the blocks left, or the absorbed lenders), which stay out of use
   * until the new records are durable.
   */
  #finishMerges(merges: Merge[]): number[] {
    const left: number[] = [];
    for (const { lender, borrower, ref, writes, absorb } of merges) {
      const entry = this.#entries.get(ref.key());
      const borrowers = this.#borrowers.get(lender);
      if (
        entry === undefined || entry.slot !== borrower || this.#lenders[borrower] !== lender ||
        this.#slotWrites[borrower] !== writes || this.#slotRefs[lender] !== undefined ||
        borrowers?.size !== 1
      ) {
        if (borrowers !== undefined) this.#checkMergeable(lender);
        continue;
      }
      this.#borrowers.delete(lender);
      // It may have become mergeable again while the flush waited (a copy of
      // the delta made and deleted meanwhile): it holds a block now.
      this.#mergeable.delete(lender);
      this.#lenders[borrower] = -1;
      this.#owned.fill(0, borrower * this.#words, (borrower + 1) * this.#words);
      this.#deltaCount--;
      if (absorb) {
        // Whole where it is: its record says so (a newer generation), and
        // the lender's slot is freed once that record is durable.
        this.#dirty.add(borrower);
        left.push(lender);
        continue;
      }
      entry.slot = lender;
      this.#slotRefs[lender] = ref;
      this.#slotRefs[borrower] = undefined;
      this.#dirty.add(lender);
      // Its record keeps naming the block until the lender's is durable.
      this.#dirty.delete(borrower);
      left.push(borrower);
    }
    return left;
  }

  /**
   * Writes `data` at `offsetBytes` of slot `toSlot`, merging the partially
   * covered edge sectors with those of `from` (the same slot, or the block a
   * copy is made from), and computes the touched sectors' CRCs. Merges only
   * with edge sectors that verify: never launders a corrupt sector. The
   * touched sectors become `toSlot`'s own when it is a delta.
   */
  #patch(from: Entry, toSlot: number, offsetBytes: number, data: Uint8Array): void {
    const sector = this.#sectorSizeBytes;
    const first = Math.floor(offsetBytes / sector);
    const end = Math.ceil((offsetBytes + data.length) / sector);
    const bytes = this.#block.subarray(0, (end - first) * sector);
    if (offsetBytes % sector !== 0) {
      const head = bytes.subarray(0, sector);
      this.#readSectors(from.slot, first, head);
      this.#verifySector(from, first, head);
    }
    const endBytes = offsetBytes + data.length;
    if (endBytes % sector !== 0 && (end - 1 > first || offsetBytes % sector === 0)) {
      const tail = bytes.subarray(bytes.length - sector);
      this.#readSectors(from.slot, end - 1, tail);
      this.#verifySector(from, end - 1, tail);
    }
    bytes.set(data, offsetBytes - first * sector);
    this.#writeSectors(toSlot, first, bytes);
    const crcsAt = toSlot * this.#sectorsPerBlock;
    for (let i = first; i < end; i++) {
      this.#crcs[crcsAt + i] = crc32(
        bytes.subarray((i - first) * sector, (i - first + 1) * sector),
      );
    }
    if (this.#lenders[toSlot]! >= 0) {
      const at = toSlot * this.#words;
      for (let i = first; i < end; i++) this.#owned[at + (i >>> 5)]! |= 1 << (i & 31);
    }
  }

  /** Whether delta `slot` holds sector `index` itself. */
  #owns(slot: number, index: number): boolean {
    return ((this.#owned[slot * this.#words + (index >>> 5)]! >>> (index & 31)) & 1) === 1;
  }

  /** The slot whose data holds sector `index` of the block in `slot`. */
  #location(slot: number, index: number): number {
    const lender = this.#lenders[slot]!;
    return lender < 0 || this.#owns(slot, index) ? slot : lender;
  }

  /** Fills `target` (whole sectors) with sectors from `first` of the block in `slot`. */
  #readSectors(slot: number, first: number, target: Uint8Array): void {
    const block = this.blockSizeBytes;
    if (this.#lenders[slot]! < 0) {
      this.#data.readAt(slot * block + first * this.#sectorSizeBytes, target);
      return;
    }
    const sector = this.#sectorSizeBytes;
    const count = target.length / sector;
    const offset = (k: number) => this.#sectorOffset(this.#location(slot, first + k), first + k);
    for (let i = 0; i < count;) {
      const j = this.#contiguousEnd(i, count, offset);
      this.#data.readAt(offset(i), target.subarray(i * sector, j * sector));
      i = j;
    }
  }

  /**
   * The end of the run of sectors from `start` (below `stop`) that lie one
   * after another in the data file; `offset(i)` says where sector `i` lies,
   * -1 for one that is not to be touched (which ends the run).
   */
  #contiguousEnd(start: number, stop: number, offset: (index: number) => number): number {
    const sector = this.#sectorSizeBytes;
    const at = offset(start);
    let end = start + 1;
    while (end < stop && offset(end) === at + (end - start) * sector) end++;
    return end;
  }

  /** Writes `bytes` (whole sectors) as sectors from `first` of `slot` itself, placing a packed delta's new ones. */
  #writeSectors(slot: number, first: number, bytes: Uint8Array): void {
    const sector = this.#sectorSizeBytes;
    if (slot < this.#numSlots) {
      this.#data.writeAt(slot * this.blockSizeBytes + first * sector, bytes);
    } else {
      const count = bytes.length / sector;
      const offset = (k: number) => this.#placeSector(slot, first + k);
      for (let i = 0; i < count;) {
        const j = this.#contiguousEnd(i, count, offset);
        this.#data.writeAt(offset(i), bytes.subarray(i * sector, j * sector));
        i = j;
      }
    }
    this.#wrote(slot, bytes.length);
  }

  /**
   * The data-file offset of sector `index` as `slot` holds it itself: in the
   * slot, or for a packed delta where its heap sector is.
   */
  #sectorOffset(slot: number, index: number): number {
    if (slot < this.#numSlots) return slot * this.blockSizeBytes + index * this.#sectorSizeBytes;
    const heapSector = this.#heapSectors[(slot - this.#numSlots) * this.#sectorsPerBlock + index]!;
    assert(heapSector !== NO_HEAP_SECTOR, `sector ${index} of ${slot} has no place`);
    return heapSector * this.#sectorSizeBytes;
  }

  /**
   * Like {@linkcode #sectorOffset}, for writing: a packed delta's sector with
   * no place yet gets a free heap sector (the caller made sure one exists).
   */
  #placeSector(slot: number, index: number): number {
    if (slot < this.#numSlots) return slot * this.blockSizeBytes + index * this.#sectorSizeBytes;
    const sectors = this.#sectorsPerBlock;
    const at = (slot - this.#numSlots) * sectors + index;
    if (this.#heapSectors[at] !== NO_HEAP_SECTOR) {
      return this.#heapSectors[at]! * this.#sectorSizeBytes;
    }
    let heap = -1;
    for (const partial of this.#heapPartial) {
      heap = partial;
      break;
    }
    if (heap < 0) {
      assert(this.#freeCount > 0, "no free slot for the heap");
      heap = this.#free[--this.#freeCount]!;
      this.#enterHeap(heap);
      this.#heapFreeSectors += sectors;
    }
    const base = heap * this.#words;
    let w = 0;
    while (this.#heapUsed[base + w] === 0xffff_ffff) w++;
    const bits = this.#heapUsed[base + w]!;
    const bit = 31 - Math.clz32(~bits & (bits + 1));
    this.#heapUsed[base + w] = bits | (1 << bit);
    this.#heapFreeSectors--;
    if (++this.#heapLive[heap]! === sectors) this.#heapPartial.delete(heap);
    const heapSector = heap * sectors + w * 32 + bit;
    this.#heapSectors[at] = heapSector;
    return heapSector * this.#sectorSizeBytes;
  }

  /** Makes free slot `slot` a heap slot with every sector free (bits past the block's end stay set). */
  #enterHeap(slot: number): void {
    const at = slot * this.#words;
    const tail = this.#sectorsPerBlock % 32;
    this.#heapUsed.fill(0, at, at + this.#words);
    if (tail !== 0) this.#heapUsed[at + this.#words - 1] = ~((1 << tail) - 1);
    this.#heapPartial.add(slot);
  }

  /** Frees the heap sectors of packed delta `slot`; a heap slot left empty is a free slot again. */
  #releaseHeap(slot: number): void {
    const sectors = this.#sectorsPerBlock;
    const from = (slot - this.#numSlots) * sectors;
    for (let at = from; at < from + sectors; at++) {
      const heapSector = this.#heapSectors[at]!;
      if (heapSector === NO_HEAP_SECTOR) continue;
      this.#heapSectors[at] = NO_HEAP_SECTOR;
      const heap = Math.floor(heapSector / sectors);
      const index = heapSector % sectors;
      const word = heap * this.#words + (index >>> 5);
      assert(
        (this.#heapUsed[word]! >>> (index & 31) & 1) === 1,
        `heap sector ${heapSector} is free`,
      );
      this.#heapUsed[word] = this.#heapUsed[word]! & ~(1 << (index & 31));
      this.#heapFreeSectors++;
      if (--this.#heapLive[heap]! > 0) {
        this.#heapPartial.add(heap);
        continue;
      }
      this.#heapPartial.delete(heap);
      this.#heapFreeSectors -= sectors;
      this.#heapUsed.fill(0, heap * this.#words, (heap + 1) * this.#words);
      this.#free[this.#freeCount++] = heap;
    }
  }

  /** Sectors packed delta records could still place: free heap sectors and free slots. */
  #heapRoom(): number {
    return this.#heapFreeSectors + this.#freeCount * this.#sectorsPerBlock;
  }

  /** Sectors delta `slot` owns. */
  #ownedCount(slot: number): number {
    let count = 0;
    for (let w = slot * this.#words; w < (slot + 1) * this.#words; w++) {
      count += popcount32(this.#owned[w]!);
    }
    return count;
  }

  /** Copies sectors [start, stop) of the block in `fromSlot` to `toSlot`, CRCs included. */
  #copySectors(fromSlot: number, toSlot: number, start: number, stop: number): void {
    this.#copyRuns(start, stop, (i) => this.#location(fromSlot, i), toSlot);
    const sectors = this.#sectorsPerBlock;
    this.#crcs.copyWithin(
      toSlot * sectors + start,
      fromSlot * sectors + start,
      fromSlot * sectors + stop,
    );
  }

  /** Copies the data of the sectors delta `fromSlot` owns and `wanted` accepts to `toSlot`. */
  #copyOwned(fromSlot: number, toSlot: number, wanted: (index: number) => boolean): void {
    this.#copyRuns(
      0,
      this.#sectorsPerBlock,
      (i) => this.#owns(fromSlot, i) && wanted(i) ? fromSlot : -1,
      toSlot,
    );
  }

  /**
   * Copies sector data of [start, stop) to the same sectors of `toSlot`, from
   * the slot `source(i)` names (-1: skip), a run of neighbours at a time.
   */
  #copyRuns(start: number, stop: number, source: (index: number) => number, toSlot: number): void {
    if (toSlot < this.#numSlots) {
      this.#gatherRuns(start, stop, source, toSlot);
      return;
    }
    const sector = this.#sectorSizeBytes;
    const fromOffset = this.#sourceOffset(source);
    // Only sectors to copy get a place (a sector not copied ends a run first).
    const toOffset = (k: number) => source(k) < 0 ? -1 : this.#placeSector(toSlot, k);
    for (let i = start; i < stop;) {
      if (source(i) < 0) {
        i++;
        continue;
      }
      const j = Math.min(
        this.#contiguousEnd(i, stop, fromOffset),
        this.#contiguousEnd(i, stop, toOffset),
      );
      this.#data.copy(fromOffset(i), toOffset(i), (j - i) * sector, this.#block);
      this.#wrote(toSlot, (j - i) * sector);
      i = j;
    }
  }

  /** Where sector `i` of the slot `source(i)` names lies in the data file; -1 when it names none. */
  #sourceOffset(source: (index: number) => number): (index: number) => number {
    return (k) => {
      const from = source(k);
      return from < 0 ? -1 : this.#sectorOffset(from, k);
    };
  }

  /**
   * {@linkcode #copyRuns} into a slot: each stretch of neighbouring sectors
   * to copy is gathered in the scratch buffer from wherever its sectors are
   * (a packed delta's lie one by one in the heap) and written with one
   * write; a stretch that is one run of the source is copied by the kernel.
   */
  #gatherRuns(
    start: number,
    stop: number,
    source: (index: number) => number,
    toSlot: number,
  ): void {
    const sector = this.#sectorSizeBytes;
    const scratch = this.#block;
    const fromOffset = this.#sourceOffset(source);
    for (let i = start; i < stop;) {
      if (source(i) < 0) {
        i++;
        continue;
      }
      let end = i + 1;
      while (end < stop && source(end) >= 0) end++;
      const toAt = toSlot * this.blockSizeBytes + i * sector;
      const length = (end - i) * sector;
      if (this.#contiguousEnd(i, end, fromOffset) === end) {
        this.#data.copy(fromOffset(i), toAt, length, scratch);
      } else {
        for (let k = i; k < end;) {
          const m = this.#contiguousEnd(k, end, fromOffset);
          this.#data.readAt(fromOffset(k), scratch.subarray((k - i) * sector, (m - i) * sector));
          k = m;
        }
        this.#data.writeAt(toAt, scratch.subarray(0, length));
      }
      this.#wrote(toSlot, length);
      i = end;
    }
  }

  /**
   * The slot to write `ref` into: its own, unless deltas borrow from it (its
   * bytes must then stay as they are), or a free one.
   *
   * @throws {OutOfSpaceError} when a free slot is needed and there is none.
   */
  #slotFor(ref: BlockRef): number {
    const existing = this.#entries.get(ref.key());
    if (
      existing !== undefined && existing.slot < this.#numSlots &&
      !this.#borrowers.has(existing.slot)
    ) {
      return existing.slot;
    }
    if (this.#freeCount === 0) {
      throw new OutOfSpaceError(
        `Cannot write ${ref}: all ${this.#numSlots} blocks of the block store in ${this.#directory} are in use`,
      );
    }
    return this.#free[this.#freeCount - 1]!;
  }

  /**
   * Records `ref` as stored in `slot` (from {@linkcode #slotFor}), releasing a
   * slot it leaves; `taken` when the slot is off the free stack already.
   */
  #install(ref: BlockRef, slot: number, taken = false): void {
    const key = ref.key();
    const existing = this.#entries.get(key);
    if (existing === undefined || existing.slot !== slot) {
      if (!taken) this.#takeFree(slot);
      if (existing === undefined) {
        this.#entries.set(key, { ref, slot });
      } else {
        const left = existing.slot;
        existing.slot = slot;
        this.#release(left);
      }
    }
    this.#slotRefs[slot] = ref;
    this.#dirty.add(slot);
  }

  /** Takes `slot` off the free stack (it is on top unless slots were freed meanwhile). */
  #takeFree(slot: number): void {
    if (slot >= this.#numSlots) {
      assert(this.#deltaFree[this.#deltaFreeCount - 1] === slot, `record ${slot} is not free`);
      this.#deltaFreeCount--;
      return;
    }
    let at = this.#freeCount - 1;
    while (at >= 0 && this.#free[at] !== slot) at--;
    assert(at >= 0, `slot ${slot} is not free`);
    this.#free.copyWithin(at, at + 1, this.#freeCount);
    this.#freeCount--;
  }

  /** `slot` no longer holds a block: free it, or keep its bytes for the deltas borrowing them. */
  #release(slot: number): void {
    this.#slotRefs[slot] = undefined;
    this.#dirty.add(slot);
    if (slot >= this.#numSlots) {
      this.#releaseHeap(slot);
      this.#unlend(slot);
      this.#deltaFree[this.#deltaFreeCount++] = slot;
      return;
    }
    if (this.#lenders[slot]! >= 0) this.#unlend(slot);
    if (this.#borrowers.has(slot)) this.#checkMergeable(slot);
    else this.#free[this.#freeCount++] = slot;
  }

  /** Makes `slot` a borrower of `lender` (its lender field is already set). */
  #lend(lender: number, slot: number): void {
    let borrowers = this.#borrowers.get(lender);
    if (borrowers === undefined) this.#borrowers.set(lender, borrowers = new Set());
    borrowers.add(slot);
    this.#deltaCount++;
    if (borrowers.size > 1) this.#mergeable.delete(lender);
  }

  /** Ends delta `slot`'s borrowing: a deleted lender nobody borrows from any more is freed. */
  #unlend(slot: number): void {
    const lender = this.#lenders[slot]!;
    this.#lenders[slot] = -1;
    this.#owned.fill(0, slot * this.#words, (slot + 1) * this.#words);
    this.#deltaCount--;
    const borrowers = this.#borrowers.get(lender)!;
    borrowers.delete(slot);
    if (borrowers.size > 0) {
      this.#checkMergeable(lender);
      return;
    }
    this.#borrowers.delete(lender);
    this.#mergeable.delete(lender);
    if (this.#slotRefs[lender] === undefined) this.#free[this.#freeCount++] = lender;
  }

  /** A lent slot whose block was deleted and that one delta borrows from can take that delta in. */
  #checkMergeable(lender: number): void {
    if (this.#slotRefs[lender] === undefined && this.#borrowers.get(lender)?.size === 1) {
      this.#mergeable.add(lender);
    } else {
      this.#mergeable.delete(lender);
    }
  }

  /**
   * Counts `bytes` written to `slot`'s data; starts writeback every
   * {@linkcode WRITEBACK_KICK_BYTES}.
   */
  #wrote(slot: number, bytes: number): void {
    this.#slotWrites[slot]!++;
    this.#unkickedBytes += bytes;
    if (this.#unkickedBytes >= WRITEBACK_KICK_BYTES) {
      this.#unkickedBytes = 0;
      this.#data.startWriteback();
    }
  }

  #get(ref: BlockRef, verb: string): Entry {
    const entry = this.#entries.get(ref.key());
    if (!entry) throw new BlockNotFoundError(`Cannot ${verb} ${ref}: block is not stored`);
    return entry;
  }

  #recordOffset(slot: number): number {
    return INDEX_HEADER_REGION_BYTES + slot * this.#recordSizeBytes;
  }

  /** Writes the record of every slot changed since the last flush. */
  #writeDirtyRecords(): void {
    const record = this.#record;
    const view = this.#recordView;
    const extension = recordExtensionOffsetBytes(this.blockSizeBytes);
    const placement = placementOffsetBytes(this.blockSizeBytes);
    const sectors = this.#sectorsPerBlock;
    for (const slot of this.#dirty) {
      const ref = this.#slotRefs[slot];
      const packed = slot >= this.#numSlots;
      const io = packed ? this.#deltas : this.#index;
      const offset = packed
        ? (slot - this.#numSlots) * this.#recordSizeBytes
        : this.#recordOffset(slot);
      if (packed) this.#deltasUnsynced = true;
      if (ref === undefined) {
        io.writeAt(offset, this.#zeroRecord);
      } else {
        record.fill(0);
        ref.writeTo(record, RECORD_REF_OFFSET_BYTES);
        const crcsAt = slot * this.#sectorsPerBlock;
        for (let i = 0; i < this.#sectorsPerBlock; i++) {
          view.setUint32(RECORD_CRCS_OFFSET_BYTES + 4 * i, this.#crcs[crcsAt + i]!, true);
        }
        writeU64(view, RECORD_GENERATION_OFFSET_BYTES, this.#generation++);
        const lender = this.#lenders[slot]!;
        if (lender >= 0) {
          view.setUint32(extension, lender + 1, true);
          for (let w = 0; w < this.#words; w++) {
            view.setUint32(extension + 4 + 4 * w, this.#owned[slot * this.#words + w]!, true);
          }
        }
        if (!packed) {
          sealRecord(record, this.blockSizeBytes, slot);
        } else {
          assert(lender >= 0, `packed delta ${slot} has no lender`);
          sealRecord(record, this.blockSizeBytes, deltaRecordPlace(slot - this.#numSlots));
          let count = 0;
          const heapAt = (slot - this.#numSlots) * sectors;
          for (let i = 0; i < sectors; i++) {
            if (!this.#owns(slot, i)) continue;
            const heapSector = this.#heapSectors[heapAt + i]!;
            assert(heapSector !== NO_HEAP_SECTOR, `sector ${i} of ${slot} has no place`);
            view.setUint32(placement + 4 * count++, heapSector, true);
          }
          sealPlacement(record, this.blockSizeBytes, count);
        }
        io.writeAt(offset, record);
      }
      this.#dirty.delete(slot);
    }
  }

  /** Sets the sector CRCs of `slot` to those of `block`, a whole block. */
  #checksumSlot(slot: number, block: Uint8Array): void {
    const sector = this.#sectorSizeBytes;
    const crcsAt = slot * this.#sectorsPerBlock;
    for (let i = 0; i < this.#sectorsPerBlock; i++) {
      this.#crcs[crcsAt + i] = crc32(block.subarray(i * sector, (i + 1) * sector));
    }
  }

  /**
   * Verifies `bytes`, whole sectors of `entry`'s block from sector `first`
   * on: one CRC-32 over all of them against their stored CRCs combined
   * (`Crc32Combiner`), and sector by sector only to name a failing one.
   */
  #verifySectors(entry: Entry, first: number, bytes: Uint8Array): void {
    const sectors = this.#sectorsPerBlock;
    const at = entry.slot * sectors;
    const bad = firstBadSector(
      bytes,
      this.#sectorSizeBytes,
      this.#crcs.subarray(at, at + sectors),
      first,
    );
    if (bad >= 0) {
      throw new BlockCorruptError(`Cannot read ${entry.ref}: sector ${bad} fails its checksum`);
    }
  }

  #verifySector(entry: Entry, index: number, bytes: Uint8Array): void {
    if (crc32(bytes) !== this.#crcs[entry.slot * this.#sectorsPerBlock + index]) {
      throw new BlockCorruptError(`Cannot read ${entry.ref}: sector ${index} fails its checksum`);
    }
  }

  /** The sector CRCs of a slot, as a new array (carved from a slab: every write and read returns one). */
  #slotCrcs(slot: number): Uint32Array {
    const at = slot * this.#sectorsPerBlock;
    const out = this.#crcCopies.words(this.#sectorsPerBlock);
    out.set(this.#crcs.subarray(at, at + this.#sectorsPerBlock));
    return out;
  }

  #checkOpen(verb: string): void {
    if (this.#closed) {
      throw new ClosedError(`Cannot ${verb} the block store in ${this.#directory}: it is closed`);
    }
  }
}

// ---------------------------------------------------------------------------
// Creating, checking, scanning and resizing (open time)

/**
 * Creates an empty store: the data file preallocated, then the index built
 * under a temporary name, made durable and renamed into place, so that an
 * index file exists only once it is complete.
 */
async function create(directory: string, lock: Deno.FsFile, header: Header): Promise<void> {
  const dataPath = `${directory}/${DATA_FILE_NAME}`;
  const tempPath = `${directory}/${INDEX_TEMP_FILE_NAME}`;
  await createPreallocated(dataPath, header.numSlots * header.blockSizeBytes);
  await createDeltaFile(`${directory}/${DELTA_FILE_NAME}`, header);
  await createPreallocated(
    tempPath,
    INDEX_HEADER_REGION_BYTES + header.numSlots * header.recordSizeBytes,
    (indexFile) => writeHeaders(indexFile, header, tempPath),
  );
  await Deno.rename(tempPath, `${directory}/${INDEX_FILE_NAME}`);
  await lock.sync();
}

/**
 * Creates `delta.blk` with every packed delta record free (zero), durably:
 * for a new store, or when a store of an older version is opened (whatever
 * such a file held then is left over from an interrupted upgrade). The
 * caller makes the directory entry durable.
 */
async function createDeltaFile(deltaPath: string, header: Header): Promise<void> {
  const records = deltaRecordCount(header.blockSizeBytes, header.numSlots);
  await createPreallocated(deltaPath, records * header.recordSizeBytes);
}

/**
 * Creates (or empties) the file at `path` with `lengthBytes` preallocated,
 * and makes it durable: by `finish` when given (it must sync what it
 * writes), otherwise by a sync of its own.
 */
async function createPreallocated(
  path: string,
  lengthBytes: number,
  finish: (file: Deno.FsFile) => Promise<void> = (file) => file.sync(),
): Promise<void> {
  const file = await Deno.open(path, {
    read: true,
    write: true,
    create: true,
    truncate: true,
    mode: STORE_FILE_MODE,
  });
  try {
    preallocate(path, 0, lengthBytes);
    await finish(file);
  } finally {
    file.close();
  }
}

/**
 * Reads the header. Of two valid copies that disagree, the one with more
 * slots wins: `grow` extends the files before it writes either copy, and
 * `shrink` cuts them only after it wrote both. `agree` is false when a copy
 * is damaged or differs, and the caller then rewrites both.
 */
function readHeader(
  indexFile: Deno.FsFile,
  indexPath: string,
): { header: Header; agree: boolean; version: number } {
  const region = new Uint8Array(INDEX_HEADER_REGION_BYTES);
  try {
    readFully(indexFile, 0, region, indexPath);
  } catch {
    throw new SyntaxError(`Cannot open ${indexPath}: it is shorter than its header`);
  }
  const copies = HEADER_COPY_OFFSETS_BYTES.map((offset) =>
    region.subarray(offset, offset + HEADER_COPY_SIZE_BYTES)
  );
  let best: (Header & { version: number }) | undefined;
  for (const copy of copies) {
    const header = decodeHeader(copy, indexPath);
    if (header && (!best || header.numSlots > best.numSlots)) best = header;
  }
  if (!best) {
    throw new SyntaxError(
      `Cannot open ${indexPath}: both copies of its header are damaged (not a Torus block store index?)`,
    );
  }
  const { version, ...header } = best;
  const encoded = encodeHeader(header);
  const agree = copies.every((copy) => copy.every((byte, i) => byte === encoded[i]));
  return { header, agree, version };
}

/**
 * Makes the file sizes match the header: longer files (left by a crash in
 * the middle of a resize) are cut, so no stale record beyond the store can
 * come back when it grows later; shorter files mean the store was damaged.
 */
async function fitFiles(
  directory: string,
  dataFile: Deno.FsFile,
  indexFile: Deno.FsFile,
  deltaFile: Deno.FsFile,
  header: Header,
): Promise<void> {
  const files = [
    [dataFile, DATA_FILE_NAME, header.numSlots * header.blockSizeBytes],
    [
      indexFile,
      INDEX_FILE_NAME,
      INDEX_HEADER_REGION_BYTES + header.numSlots * header.recordSizeBytes,
    ],
    [
      deltaFile,
      DELTA_FILE_NAME,
      deltaRecordCount(header.blockSizeBytes, header.numSlots) * header.recordSizeBytes,
    ],
  ] as const;
  for (const [file, name, expected] of files) {
    const { size } = await file.stat();
    if (size < expected) {
      throw new TorusError(
        `Cannot open block store in ${directory}: ${name} has ${size} bytes, fewer than the ${expected} its header implies (the store is damaged)`,
      );
    }
    if (size > expected) {
      await file.truncate(expected);
      await file.sync();
    }
  }
}

interface Layout {
  directory: string;
  dataFile: Deno.FsFile;
  indexFile: Deno.FsFile;
  deltaFile: Deno.FsFile;
  header: Header;
  dataPath: string;
  indexPath: string;
  deltaPath: string;
}

interface Scan {
  /**
   * The stored blocks. `slot` is a slot for a record of `index.blk`, and
   * `-1 - r` for record `r` of `delta.blk` (a packed delta).
   */
  entries: Map<string, Entry>;
  /** Sector CRCs of every slot, from the records (`sectorsPerBlock` per slot). */
  crcs: Uint32Array;
  /** Deltas: the slot each slot borrows from, or -1. */
  lenders: Int32Array;
  /** Deltas: their owned-sector bitmaps, `ownedWords` per slot. */
  owned: Uint32Array;
  /** The same three for the records of `delta.blk`. */
  deltaCrcs: Uint32Array;
  deltaLenders: Int32Array;
  deltaOwned: Uint32Array;
  /** Packed deltas: the data-file sector holding each owned sector, `sectorsPerBlock` per record. */
  heapSectors: Uint32Array;
  /** Packed deltas stored. */
  packedCount: number;
  /** The next generation to write: one more than the highest seen. */
  generation: number;
}

/** A record that passed its checks, before duplicates and heap claims are settled. */
interface Candidate {
  key: string;
  ref: BlockRef;
  generation: number;
  /** A slot, or `-1 - r` for record `r` of `delta.blk`. */
  place: number;
}

/**
 * Calls `visit` for every record of a file that has a generation (not a
 * free record), reading `count` records from `startBytes` in chunks.
 */
function forEachRecord(
  file: Deno.FsFile,
  path: string,
  startBytes: number,
  count: number,
  recordSize: number,
  visit: (index: number, record: Uint8Array, view: DataView) => void,
): void {
  const recordsPerChunk = Math.max(1, Math.floor(INDEX_SCAN_CHUNK_BYTES / recordSize));
  const chunk = new Uint8Array(Math.min(recordsPerChunk, Math.max(1, count)) * recordSize);
  for (let first = 0; first < count; first += recordsPerChunk) {
    const n = Math.min(recordsPerChunk, count - first);
    const bytes = chunk.subarray(0, n * recordSize);
    readFully(file, startBytes + first * recordSize, bytes, path);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let i = 0; i < n; i++) {
      const at = i * recordSize;
      const low = view.getUint32(at + RECORD_GENERATION_OFFSET_BYTES, true);
      const high = view.getUint32(at + RECORD_GENERATION_OFFSET_BYTES + 4, true);
      if (low === 0 && high === 0) continue; // generation 0: a free record
      const record = bytes.subarray(at, at + recordSize);
      visit(first + i, record, new DataView(record.buffer, record.byteOffset, recordSize));
    }
  }
}

/**
 * Loads the index: every record of `index.blk` and `delta.blk` that passes
 * its checks is a stored block; every other record is free. When two
 * records claim one ref (a crash while shrinking, merging, or moving a
 * block), the higher generation wins. A packed delta whose heap sectors lie
 * in a slot a winning record uses, or that a newer packed delta claims, was
 * moved or deleted before the crash (heap sectors are reused only once
 * freed): it loses too, and the duplicates it had beaten are judged again.
 * Losing records are zeroed, durably, before the store is used.
 */
async function scanIndex(layout: Layout): Promise<Scan> {
  const { header, indexFile, indexPath, deltaFile, deltaPath } = layout;
  const recordSize = header.recordSizeBytes;
  const blockSize = header.blockSizeBytes;
  const crcOffset = recordCrcOffsetBytes(blockSize);
  const sectors = blockSize / header.sectorSizeBytes;
  const words = ownedWords(blockSize);
  const extension = recordExtensionOffsetBytes(blockSize);
  const placement = placementOffsetBytes(blockSize);
  const numDeltas = deltaRecordCount(blockSize, header.numSlots);
  const packedMax = packedDeltaSectorsMax(blockSize);
  const heapSectorCount = header.numSlots * sectors;
  const crcs = new Uint32Array(header.numSlots * sectors);
  const lenders = new Int32Array(header.numSlots).fill(-1);
  const owned = new Uint32Array(header.numSlots * words);
  const deltaCrcs = new Uint32Array(numDeltas * sectors);
  const deltaLenders = new Int32Array(numDeltas).fill(-1);
  const deltaOwned = new Uint32Array(numDeltas * words);
  const heapSectors = new Uint32Array(numDeltas * sectors).fill(NO_HEAP_SECTOR);
  const candidates: Candidate[] = [];
  let maxGeneration = 0;

  /** Decodes the common part of a record that passed its CRCs; false when it cannot be. */
  const decode = (record: Uint8Array, view: DataView, place: number): boolean => {
    let ref: BlockRef;
    let generation: number;
    try {
      ref = BlockRef.fromBytes(record, RECORD_REF_OFFSET_BYTES);
      generation = readU64(view, RECORD_GENERATION_OFFSET_BYTES);
    } catch {
      return false; // passes its CRC yet does not decode: treat as free
    }
    maxGeneration = Math.max(maxGeneration, generation);
    candidates.push({ key: ref.key(), ref, generation, place });
    return true;
  };

  forEachRecord(
    indexFile,
    indexPath,
    INDEX_HEADER_REGION_BYTES,
    header.numSlots,
    recordSize,
    (slot, record, view) => {
      if (recordCrc(record, crcOffset, slot) !== view.getUint32(crcOffset, true)) return; // torn: free
      if (!extensionValid(record, blockSize)) return; // torn: free
      const lender = view.getUint32(extension, true) - 1;
      if (lender >= header.numSlots || lender === slot) return; // cannot be: free
      if (!decode(record, view, slot)) return;
      for (let j = 0; j < sectors; j++) {
        crcs[slot * sectors + j] = view.getUint32(RECORD_CRCS_OFFSET_BYTES + 4 * j, true);
      }
      lenders[slot] = lender;
      for (let w = 0; w < words && lender >= 0; w++) {
        owned[slot * words + w] = view.getUint32(extension + 4 + 4 * w, true);
      }
    },
  );

  forEachRecord(deltaFile, deltaPath, 0, numDeltas, recordSize, (r, record, view) => {
    const place = deltaRecordPlace(r);
    if (recordCrc(record, crcOffset, place) !== view.getUint32(crcOffset, true)) return;
    const lender = view.getUint32(extension, true) - 1;
    if (lender < 0 || lender >= header.numSlots) return; // a packed delta always borrows
    if (!extensionValid(record, blockSize)) return;
    let count = 0;
    for (let w = 0; w < words; w++) {
      count += popcount32(view.getUint32(extension + 4 + 4 * w, true));
    }
    if (count > packedMax || !placementValid(record, blockSize, count)) return;
    let k = 0;
    let placed = true;
    for (let i = 0; i < sectors && placed; i++) {
      if (((view.getUint32(extension + 4 + 4 * (i >>> 5), true) >>> (i & 31)) & 1) === 0) continue;
      const sector = view.getUint32(placement + 4 * k++, true);
      heapSectors[r * sectors + i] = sector;
      placed = sector < heapSectorCount; // else it cannot be: free
    }
    if (!placed || !decode(record, view, -1 - r)) {
      heapSectors.fill(NO_HEAP_SECTOR, r * sectors, (r + 1) * sectors);
      return;
    }
    for (let j = 0; j < sectors; j++) {
      deltaCrcs[r * sectors + j] = view.getUint32(RECORD_CRCS_OFFSET_BYTES + 4 * j, true);
    }
    deltaLenders[r] = lender;
    for (let w = 0; w < words; w++) {
      deltaOwned[r * words + w] = view.getUint32(extension + 4 + 4 * w, true);
    }
  });

  // Settle duplicates and heap claims; a packed delta that loses its heap
  // sectors drops out, and the duplicates it had beaten are judged again.
  const excluded = new Set<number>();
  let winners: Map<string, Candidate>;
  for (;;) {
    winners = new Map();
    for (const candidate of candidates) {
      if (excluded.has(candidate.place)) continue;
      const best = winners.get(candidate.key);
      if (best === undefined || candidate.generation > best.generation) {
        winners.set(candidate.key, candidate);
      }
    }
    const used = new Uint8Array(header.numSlots);
    const packed: Candidate[] = [];
    for (const winner of winners.values()) {
      if (winner.place >= 0) {
        used[winner.place] = 1;
        const lender = lenders[winner.place]!;
        if (lender >= 0) used[lender] = 1;
      } else {
        used[deltaLenders[-1 - winner.place]!] = 1;
        packed.push(winner);
      }
    }
    packed.sort((a, b) => b.generation - a.generation);
    const claimed = new Set<number>();
    const before = excluded.size;
    for (const winner of packed) {
      const r = -1 - winner.place;
      const mine: number[] = [];
      for (let i = 0; i < sectors; i++) {
        const sector = heapSectors[r * sectors + i]!;
        if (sector === NO_HEAP_SECTOR) continue;
        if (used[Math.floor(sector / sectors)] || claimed.has(sector) || mine.includes(sector)) {
          excluded.add(winner.place);
          break;
        }
        mine.push(sector);
      }
      if (!excluded.has(winner.place)) { for (const sector of mine) claimed.add(sector); }
    }
    if (excluded.size === before) break;
  }

  const entries = new Map<string, Entry>();
  const loserSlots: number[] = [];
  const loserRecords: number[] = [];
  const winning = new Set<Candidate>(winners.values());
  for (const candidate of candidates) {
    if (winning.has(candidate)) {
      entries.set(candidate.key, { ref: candidate.ref, slot: candidate.place });
      continue;
    }
    if (candidate.place >= 0) {
      loserSlots.push(candidate.place);
      lenders[candidate.place] = -1;
    } else {
      const r = -1 - candidate.place;
      loserRecords.push(r);
      deltaLenders[r] = -1;
      deltaOwned.fill(0, r * words, (r + 1) * words);
      heapSectors.fill(NO_HEAP_SECTOR, r * sectors, (r + 1) * sectors);
    }
  }
  const zero = new Uint8Array(recordSize);
  for (const slot of loserSlots) {
    writeFully(indexFile, INDEX_HEADER_REGION_BYTES + slot * recordSize, zero, indexPath);
  }
  if (loserSlots.length > 0) await indexFile.syncData();
  for (const r of loserRecords) writeFully(deltaFile, r * recordSize, zero, deltaPath);
  if (loserRecords.length > 0) await deltaFile.syncData();
  let packedCount = 0;
  for (const entry of entries.values()) if (entry.slot < 0) packedCount++;
  return {
    entries,
    crcs,
    lenders,
    owned,
    deltaCrcs,
    deltaLenders,
    deltaOwned,
    heapSectors,
    packedCount,
    generation: maxGeneration + 1,
  };
}

/**
 * Grows the store to `numSlots` (the original's PR #346): extends and
 * preallocates both files (new records are zero, so free), makes them
 * durable, and only then writes the header copies. A crash before the header
 * leaves the old size, and `fitFiles` cuts the extra bytes.
 */
async function grow(layout: Layout, numSlots: number): Promise<void> {
  const { header, dataFile, indexFile, deltaFile, dataPath, indexPath, deltaPath } = layout;
  const oldData = header.numSlots * header.blockSizeBytes;
  preallocate(dataPath, oldData, numSlots * header.blockSizeBytes - oldData);
  await dataFile.sync();
  const oldIndex = INDEX_HEADER_REGION_BYTES + header.numSlots * header.recordSizeBytes;
  preallocate(indexPath, oldIndex, (numSlots - header.numSlots) * header.recordSizeBytes);
  await indexFile.sync();
  const oldDeltas = deltaRecordCount(header.blockSizeBytes, header.numSlots);
  const newDeltas = deltaRecordCount(header.blockSizeBytes, numSlots);
  preallocate(
    deltaPath,
    oldDeltas * header.recordSizeBytes,
    (newDeltas - oldDeltas) * header.recordSizeBytes,
  );
  await deltaFile.sync();
  await writeHeaders(indexFile, { ...header, numSlots }, indexPath);
}

/**
 * Shrinks the store to `numSlots`, moving blocks that live beyond it into
 * free slots below it. Copies are made durable (data, then records with a
 * higher generation) before the header changes, and the files are cut last,
 * so a crash at any step reopens to the old or the new size with every block
 * (a duplicate left by a crash is resolved by `scanIndex`). Returns the next
 * generation.
 *
 * @throws {TorusError} when the stored blocks do not fit in `numSlots`.
 */
async function shrink(layout: Layout, scan: Scan, numSlots: number): Promise<number> {
  const { directory, header, dataFile, indexFile, deltaFile, dataPath, indexPath } = layout;
  const { entries } = scan;
  if (scan.packedCount > 0) {
    // Their records and heap sectors would have to move with them.
    throw new TorusError(
      `Cannot open block store in ${directory} with room for ${numSlots} blocks: ${scan.packedCount} blocks are stored as packed copies of others (open it at its size and let garbage collection run first, or use a larger size)`,
    );
  }
  if (entries.size > numSlots) {
    throw new TorusError(
      `Cannot open block store in ${directory} with room for ${numSlots} blocks: it holds ${entries.size} blocks (use a larger size, or delete data first)`,
    );
  }
  const blockSize = header.blockSizeBytes;
  const recordSize = header.recordSizeBytes;
  const used = new Uint8Array(header.numSlots);
  for (const entry of entries.values()) used[entry.slot] = 1;
  const lentBeyond = new Set<number>();
  for (const lender of scan.lenders) {
    if (lender < 0) continue;
    used[lender] = 1;
    if (lender >= numSlots) lentBeyond.add(lender);
  }
  if (lentBeyond.size > 0) {
    // Moving a lent slot would mean rewriting its borrowers' records in place.
    throw new TorusError(
      `Cannot open block store in ${directory} with room for ${numSlots} blocks: ${lentBeyond.size} blocks beyond that share sectors with copies of them (open it at its size and let garbage collection run first, or use a larger size)`,
    );
  }
  const movers = [...entries.values()].filter((entry) => entry.slot >= numSlots);
  const targets: number[] = [];
  for (let slot = 0; slot < numSlots && targets.length < movers.length; slot++) {
    if (!used[slot]) targets.push(slot);
  }
  let generation = scan.generation;
  if (movers.length > 0) {
    const words = ownedWords(blockSize);
    const block = new Uint8Array(blockSize);
    for (const [i, entry] of movers.entries()) {
      readFully(dataFile, entry.slot * blockSize, block, dataPath);
      writeFully(dataFile, targets[i]! * blockSize, block, dataPath);
    }
    await dataFile.syncData();
    const record = new Uint8Array(recordSize);
    const view = new DataView(record.buffer);
    for (const [i, entry] of movers.entries()) {
      const target = targets[i]!;
      readFully(indexFile, INDEX_HEADER_REGION_BYTES + entry.slot * recordSize, record, indexPath);
      writeU64(view, RECORD_GENERATION_OFFSET_BYTES, generation++);
      sealRecord(record, blockSize, target);
      writeFully(indexFile, INDEX_HEADER_REGION_BYTES + target * recordSize, record, indexPath);
      const sectors = blockSize / header.sectorSizeBytes;
      scan.crcs.copyWithin(target * sectors, entry.slot * sectors, (entry.slot + 1) * sectors);
      scan.lenders[target] = scan.lenders[entry.slot]!;
      scan.lenders[entry.slot] = -1;
      scan.owned.copyWithin(target * words, entry.slot * words, (entry.slot + 1) * words);
      entry.slot = target;
    }
    await indexFile.syncData();
  }
  await writeHeaders(indexFile, { ...header, numSlots }, indexPath);
  await dataFile.truncate(numSlots * blockSize);
  await dataFile.sync();
  await indexFile.truncate(INDEX_HEADER_REGION_BYTES + numSlots * recordSize);
  await indexFile.sync();
  // Every record of delta.blk is free (no packed delta is stored).
  await deltaFile.truncate(deltaRecordCount(blockSize, numSlots) * recordSize);
  await deltaFile.sync();
  return generation;
}
