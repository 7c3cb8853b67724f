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
 * ```
 *
 * A slot whose record fails its CRC (all zero, torn, garbage) is free. Data
 * is written before its record; `flush()` fdatasyncs the data file, then the
 * index file. Every sector of every block carries a CRC-32 in its record, so
 * a torn data write reads as `BlockCorruptError`, never as wrong bytes.
 *
 * Linux only: it calls libc through FFI (`--allow-ffi`) for `pread`, `pwrite`
 * and `posix_fallocate`. Reads and writes are synchronous calls (microseconds
 * on the page cache, where an async Deno file op costs ~190 µs); only the
 * fdatasyncs of `flush()` leave the event loop.
 *
 * @module
 */
import { BLOCK_REF_SIZE_BYTES, BlockRef, readU64, writeU64 } from "../core/block_ref.ts";
import { assert } from "../assert.ts";
import { crc32 } from "../core/crc32.ts";
import { blockDigest, sectorSizeBytes } from "../core/sector.ts";
import { BLOCK_SIZE_BYTES_MAX, BLOCK_SIZE_BYTES_MIN } from "../constants.ts";
import {
  BlockCorruptError,
  BlockNotFoundError,
  ClosedError,
  OutOfSpaceError,
  TorusError,
} from "../errors.ts";
import { type BlockRange, type BlockRead, type BlockStore, checkRange } from "./block_store.ts";

/** Name of the data file inside the store directory. */
export const DATA_FILE_NAME = "data.blk";
/** Name of the index file inside the store directory. */
export const INDEX_FILE_NAME = "index.blk";
/** Name the index file is built under before it is renamed into place on creation. */
const INDEX_TEMP_FILE_NAME = "index.blk.tmp";
/** First 8 bytes of the index file. */
export const INDEX_MAGIC = "TORUSBLK";
/** Version of the on-disk format this module reads and writes. */
export const INDEX_FORMAT_VERSION = 1;
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
/** Bytes of the index file read per step when a store is opened. */
const INDEX_SCAN_CHUNK_BYTES = 4 * 1024 * 1024;
/**
 * Bytes written to the data file between two nudges of the kernel to start
 * writing them back (`sync_file_range`): a commit's fdatasync then waits for
 * at most about this much, not for everything written since the last one.
 */
export const WRITEBACK_KICK_BYTES = 32 * 1024 * 1024;
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
/** `sync_file_range` flag: start writeback of dirty pages, do not wait. */
const SYNC_FILE_RANGE_WRITE = 2;
const ENOSPC = 28;
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
  95: "EOPNOTSUPP",
  122: "EDQUOT",
};

/**
 * How a store moves bytes between memory and its files:
 * - `pread`: synchronous `pread`/`pwrite` through FFI (the default, chosen by
 *   measurement; see `Documentation/storage.md`);
 * - `mmap`: both files mapped `MAP_SHARED`, bytes copied in and out;
 * - `fsfile`: `Deno.FsFile` `seekSync` + `readSync`/`writeSync`.
 *
 * The alternatives exist for `tests/bench/file_store_bench.ts`.
 */
export type FileBlockStoreIo = "pread" | "mmap" | "fsfile";

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
  const needed = recordCrcOffsetBytes(blockSizeBytes) + 4;
  let size = RECORD_SIZE_BYTES_MIN;
  while (size < needed) size *= 2;
  return size;
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
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  posix_fallocate: { parameters: ["i32", "i64", "i64"], result: "i32" },
  sync_file_range: { parameters: ["i32", "i64", "i64", "u32"], result: "i32" },
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
  /** Writes all of `source` at `offsetBytes`. */
  writeAt(offsetBytes: number, source: Uint8Array): void;
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
  /** Releases the descriptor or mapping. */
  release(): void;
}

/** `pread`/`pwrite` through FFI on a descriptor of its own. */
class PreadIo implements PositionedIo {
  #path: string;
  #fd: number;
  /** Whether `copy_file_range` works here; cleared at its first refusal. */
  #kernelCopy = true;
  /** The in/out offsets `copy_file_range` reads and advances. */
  #copyOffsets = new BigInt64Array(2);

  constructor(path: string) {
    this.#path = path;
    this.#fd = openFd(path);
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
        throw new Error(
          `Cannot read ${target.length} bytes at ${offsetBytes} of ${this.#path}: ${
            errnoName(code)
          }`,
        );
      }
      if (n === 0) {
        throw new Error(
          `Cannot read ${target.length} bytes at ${offsetBytes} of ${this.#path}: past the end`,
        );
      }
      done += n;
    }
  }

  writeAt(offsetBytes: number, source: Uint8Array): void {
    let done = 0;
    while (done < source.length) {
      const n = Number(
        libc().pwrite(
          this.#fd,
          source.subarray(done),
          BigInt(source.length - done),
          BigInt(offsetBytes + done),
        ),
      );
      if (n < 0) {
        const code = errno();
        if (code === EINTR) continue;
        const message = `Cannot write ${source.length} bytes at ${offsetBytes} of ${this.#path}: ${
          errnoName(code)
        }`;
        throw code === ENOSPC ? new OutOfSpaceError(message) : new Error(message);
      }
      done += n;
    }
  }

  copy(fromBytes: number, toBytes: number, lengthBytes: number, scratch: Uint8Array): void {
    if (this.#kernelCopy) {
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
    // offset 0, nbytes 0: the whole file. Errors only lose the hint.
    libc().sync_file_range(this.#fd, 0n, 0n, SYNC_FILE_RANGE_WRITE);
  }

  release(): void {
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

  writeAt(offsetBytes: number, source: Uint8Array): void {
    this.#bytes.set(source, offsetBytes);
  }

  copy(fromBytes: number, toBytes: number, lengthBytes: number): void {
    this.#bytes.copyWithin(toBytes, fromBytes, fromBytes + lengthBytes);
  }

  startWriteback(): void {
    // The kernel writes a shared mapping back on its own schedule.
  }

  release(): void {
    // The view dangles after munmap: drop it first.
    this.#bytes = new Uint8Array(0);
    libc().munmap(this.#pointer, BigInt(this.#lengthBytes));
  }
}

/** `Deno.FsFile` seek + read/write, synchronous. */
class FsFileIo implements PositionedIo {
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

  writeAt(offsetBytes: number, source: Uint8Array): void {
    this.#file.seekSync(offsetBytes, Deno.SeekMode.Start);
    let done = 0;
    while (done < source.length) done += this.#file.writeSync(source.subarray(done));
  }

  copy(fromBytes: number, toBytes: number, lengthBytes: number, scratch: Uint8Array): void {
    copyThrough(this, fromBytes, toBytes, lengthBytes, scratch);
  }

  startWriteback(): void {
    // Deno.FsFile has no such call; the fdatasync of flush() does it all.
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

/** Decodes one header copy; undefined when it is not a valid header. */
function decodeHeader(bytes: Uint8Array, where: string): Header | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_COPY_SIZE_BYTES);
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== INDEX_MAGIC) return undefined;
  if (
    crc32(bytes.subarray(0, HEADER_CRC_OFFSET_BYTES)) !==
      view.getUint32(HEADER_CRC_OFFSET_BYTES, true)
  ) {
    return undefined;
  }
  const version = view.getUint32(8, true);
  if (version !== INDEX_FORMAT_VERSION) {
    throw new TorusError(
      `Cannot open ${where}: it has format version ${version}; this Torus reads version ${INDEX_FORMAT_VERSION}`,
    );
  }
  return {
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

/** Everything {@linkcode FileBlockStore.open} prepares for the constructor. */
interface OpenState {
  directory: string;
  blockSizeBytes: number;
  numSlots: number;
  lock: Deno.FsFile;
  dataFile: Deno.FsFile;
  indexFile: Deno.FsFile;
  data: PositionedIo;
  index: PositionedIo;
  entries: Map<string, Entry>;
  /** Sector CRCs of every slot (`sectorsPerBlock` per slot), as the index records hold them. */
  crcs: Uint32Array;
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
  #recordCrcOffsetBytes: number;
  #lock: Deno.FsFile;
  #dataFile: Deno.FsFile;
  #indexFile: Deno.FsFile;
  #data: PositionedIo;
  #index: PositionedIo;
  #entries: Map<string, Entry>;
  /** Free slots, a stack: the lowest free slot is on top after open. */
  #free: Uint32Array;
  #freeCount = 0;
  #generation: number;
  #closed = false;
  /** Flushes in flight, which `close()` waits for. */
  #flushes = new Set<Promise<void>>();
  /**
   * The sector CRCs of every slot, `sectorsPerBlock` per slot: the index in
   * memory (4 bytes per 4 KiB sector, 0.1% of the store). Reads verify
   * against it without touching the index file.
   */
  #crcs: Uint32Array;
  /** The ref stored in each slot, or undefined when the slot is free. */
  #slotRefs: (BlockRef | undefined)[];
  /** Slots whose record changed since the last flush; written by `flush()`. */
  #dirty = new Set<number>();
  /** Bytes written to the data file since writeback was last started. */
  #unkickedBytes = 0;
  /** Scratch buffers: every operation runs synchronously up to its first await. */
  #block: Uint8Array;
  #record: Uint8Array;
  #recordView: DataView;
  #zeroRecord: Uint8Array;

  private constructor(state: OpenState) {
    this.blockSizeBytes = state.blockSizeBytes;
    this.#directory = state.directory;
    this.#numSlots = state.numSlots;
    this.#sectorSizeBytes = sectorSizeBytes(state.blockSizeBytes);
    this.#sectorsPerBlock = state.blockSizeBytes / this.#sectorSizeBytes;
    this.#recordSizeBytes = indexRecordSizeBytes(state.blockSizeBytes);
    this.#recordCrcOffsetBytes = recordCrcOffsetBytes(state.blockSizeBytes);
    this.#lock = state.lock;
    this.#dataFile = state.dataFile;
    this.#indexFile = state.indexFile;
    this.#data = state.data;
    this.#index = state.index;
    this.#entries = state.entries;
    this.#generation = state.generation;
    this.#free = new Uint32Array(state.numSlots);
    const used = new Uint8Array(state.numSlots);
    for (const entry of state.entries.values()) used[entry.slot] = 1;
    for (let slot = state.numSlots - 1; slot >= 0; slot--) {
      if (!used[slot]) this.#free[this.#freeCount++] = slot;
    }
    this.#block = new Uint8Array(state.blockSizeBytes);
    this.#record = new Uint8Array(this.#recordSizeBytes);
    this.#recordView = new DataView(this.#record.buffer);
    this.#zeroRecord = new Uint8Array(this.#recordSizeBytes);
    this.#crcs = state.crcs;
    this.#slotRefs = new Array(state.numSlots);
    for (const entry of state.entries.values()) this.#slotRefs[entry.slot] = entry.ref;
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

      const { header, agree } = readHeader(indexFile, indexPath);
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
      await fitFiles(directory, dataFile, indexFile, header);
      if (!agree) await writeHeaders(indexFile, header, indexPath);

      const layout = { directory, dataFile, indexFile, header, dataPath, indexPath };
      const scan = await scanIndex(layout);
      if (numSlots > header.numSlots) {
        await grow(layout, numSlots);
      } else if (numSlots < header.numSlots) {
        scan.generation = await shrink(layout, scan, numSlots);
      }
      const sectorsPerSlot = blockSizeBytes / wanted.sectorSizeBytes;
      const crcs = new Uint32Array(numSlots * sectorsPerSlot);
      crcs.set(scan.crcs.subarray(0, crcs.length));

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
        data = new PreadIo(dataPath);
        opened.push(data);
        index = new PreadIo(indexPath);
      }
      return new FileBlockStore({
        directory,
        blockSizeBytes,
        numSlots,
        lock,
        dataFile,
        indexFile,
        data,
        index,
        entries: scan.entries,
        crcs,
        generation: scan.generation,
      });
    } catch (error) {
      for (const resource of opened) {
        if (resource instanceof Deno.FsFile) resource.close();
        else resource.release();
      }
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

  usedBlocks(): number {
    return this.#entries.size;
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
    const entry = this.#get(ref, "read");
    const sector = this.#sectorSizeBytes;
    if (
      into !== undefined && into.length === lengthBytes && lengthBytes > 0 &&
      offsetBytes % sector === 0 && lengthBytes % sector === 0
    ) {
      // Whole sectors: read straight into the caller's buffer.
      const first = offsetBytes / sector;
      this.#data.readAt(entry.slot * this.blockSizeBytes + offsetBytes, into);
      for (let i = 0; i < lengthBytes / sector; i++) {
        this.#verifySector(entry, first + i, into.subarray(i * sector, (i + 1) * sector));
      }
      return { data: into, sectorCrcs: this.#slotCrcs(entry.slot) };
    }
    const first = Math.min(Math.floor(offsetBytes / sector), this.#sectorsPerBlock - 1);
    const end = Math.max(first + 1, Math.ceil((offsetBytes + lengthBytes) / sector));
    const bytes = new Uint8Array((end - first) * sector);
    this.#data.readAt(entry.slot * this.blockSizeBytes + first * sector, bytes);
    for (let i = first; i < end; i++) {
      this.#verifySector(
        entry,
        i,
        bytes.subarray((i - first) * sector, (i - first + 1) * sector),
      );
    }
    const start = offsetBytes - first * sector;
    const data = start === 0 && lengthBytes === bytes.length
      ? bytes
      : bytes.slice(start, start + lengthBytes);
    return { data, sectorCrcs: this.#slotCrcs(entry.slot) };
  }

  async writeBlock(ref: BlockRef, data: Uint8Array): Promise<void> {
    this.#checkOpen("write");
    if (data.length > this.blockSizeBytes) {
      throw new RangeError(
        `Cannot write ${data.length} bytes to ${ref}: a block has ${this.blockSizeBytes} bytes`,
      );
    }
    const key = ref.key();
    const existing = this.#entries.get(key);
    const slot = existing ? existing.slot : this.#freeSlot(ref);
    let block = data;
    if (data.length !== this.blockSizeBytes) {
      block = this.#block;
      block.set(data);
      block.fill(0, data.length);
    }
    const sector = this.#sectorSizeBytes;
    const crcsAt = slot * this.#sectorsPerBlock;
    // Data first; the record that vouches for it is written by the next flush.
    this.#data.writeAt(slot * this.blockSizeBytes, block);
    this.#wrote(block.length);
    for (let i = 0; i < this.#sectorsPerBlock; i++) {
      this.#crcs[crcsAt + i] = crc32(block.subarray(i * sector, (i + 1) * sector));
    }
    this.#slotRefs[slot] = ref;
    this.#dirty.add(slot);
    if (!existing) {
      this.#freeCount--;
      this.#entries.set(key, { ref, slot });
    }
  }

  async writeBlockRange(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    this.#checkOpen("write");
    checkRange(this.blockSizeBytes, { offsetBytes, lengthBytes: data.length });
    const entry = this.#get(ref, "write");
    const crcsAt = entry.slot * this.#sectorsPerBlock;
    if (
      expectDigest !== undefined &&
      blockDigest(this.#crcs.subarray(crcsAt, crcsAt + this.#sectorsPerBlock)) !== expectDigest
    ) {
      throw new BlockCorruptError(`Cannot write to ${ref}: it does not match the expected digest`);
    }
    if (data.length === 0) return this.#slotCrcs(entry.slot);
    this.#patch(entry, entry.slot, offsetBytes, data);
    this.#dirty.add(entry.slot);
    return this.#slotCrcs(entry.slot);
  }

  /**
   * Copy-on-write inside the store: `ref` becomes a copy of `source` with
   * `data` at `offsetBytes`. The unchanged sectors are copied by the kernel
   * (`copy_file_range`, no trip through JavaScript) with their CRCs taken from
   * the source's record, so a sector that was corrupt stays detectably corrupt;
   * only the sectors `data` touches are checksummed anew.
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
    const from = this.#get(source, "copy");
    const sectors = this.#sectorsPerBlock;
    const fromCrcsAt = from.slot * sectors;
    if (
      expectDigest !== undefined &&
      blockDigest(this.#crcs.subarray(fromCrcsAt, fromCrcsAt + sectors)) !== expectDigest
    ) {
      throw new BlockCorruptError(`Cannot copy ${source}: it does not match the expected digest`);
    }
    const key = ref.key();
    const existing = this.#entries.get(key);
    const slot = existing ? existing.slot : this.#freeSlot(ref);
    const sector = this.#sectorSizeBytes;
    // Sectors [first, end) are touched by `data`; the rest are copied as they are.
    const first = data.length === 0 ? 0 : Math.floor(offsetBytes / sector);
    const end = data.length === 0 ? 0 : Math.ceil((offsetBytes + data.length) / sector);
    const fromBase = from.slot * this.blockSizeBytes;
    const toBase = slot * this.blockSizeBytes;
    const toCrcsAt = slot * sectors;
    const copyRange = (start: number, stop: number) => {
      if (stop <= start) return;
      this.#data.copy(
        fromBase + start * sector,
        toBase + start * sector,
        (stop - start) * sector,
        this.#block,
      );
      this.#crcs.copyWithin(toCrcsAt + start, fromCrcsAt + start, fromCrcsAt + stop);
    };
    copyRange(0, first);
    copyRange(end, sectors);
    this.#wrote((sectors - (end - first)) * sector);
    if (end > first) this.#patch(from, slot, offsetBytes, data);
    this.#slotRefs[slot] = ref;
    this.#dirty.add(slot);
    if (!existing) {
      this.#freeCount--;
      this.#entries.set(key, { ref, slot });
    }
    return this.#slotCrcs(slot);
  }

  async deleteBlock(ref: BlockRef): Promise<boolean> {
    this.#checkOpen("delete from");
    const key = ref.key();
    const entry = this.#entries.get(key);
    if (!entry) return false;
    this.#slotRefs[entry.slot] = undefined;
    this.#dirty.add(entry.slot);
    this.#entries.delete(key);
    this.#free[this.#freeCount++] = entry.slot;
    return true;
  }

  blockRefs(): BlockRef[] {
    this.#checkOpen("list");
    return [...this.#entries.values()].map((entry) => entry.ref);
  }

  /** fdatasyncs the data file, then the index file. */
  async flush(): Promise<void> {
    this.#checkOpen("flush");
    const sync = this.#sync();
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
      // Flushes in flight keep their descriptors until they settle.
      await Promise.allSettled(this.#flushes);
      await this.#sync();
    } finally {
      this.#data.release();
      this.#index.release();
      this.#dataFile.close();
      this.#indexFile.close();
      this.#entries.clear();
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
    await this.#indexFile.syncData();
  }

  /**
   * Writes `data` at `offsetBytes` of slot `toSlot`, merging the partially
   * covered edge sectors with those of `from` (the same slot, or the block a
   * copy is made from), and computes the touched sectors' CRCs. Merges only
   * with edge sectors that verify: never launders a corrupt sector.
   */
  #patch(from: Entry, toSlot: number, offsetBytes: number, data: Uint8Array): void {
    const sector = this.#sectorSizeBytes;
    const first = Math.floor(offsetBytes / sector);
    const end = Math.ceil((offsetBytes + data.length) / sector);
    const bytes = this.#block.subarray(0, (end - first) * sector);
    const fromBase = from.slot * this.blockSizeBytes;
    if (offsetBytes % sector !== 0) {
      const head = bytes.subarray(0, sector);
      this.#data.readAt(fromBase + first * sector, head);
      this.#verifySector(from, first, head);
    }
    const endBytes = offsetBytes + data.length;
    if (endBytes % sector !== 0 && (end - 1 > first || offsetBytes % sector === 0)) {
      const tail = bytes.subarray(bytes.length - sector);
      this.#data.readAt(fromBase + (end - 1) * sector, tail);
      this.#verifySector(from, end - 1, tail);
    }
    bytes.set(data, offsetBytes - first * sector);
    this.#data.writeAt(toSlot * this.blockSizeBytes + first * sector, bytes);
    this.#wrote(bytes.length);
    const crcsAt = toSlot * this.#sectorsPerBlock;
    for (let i = first; i < end; i++) {
      this.#crcs[crcsAt + i] = crc32(
        bytes.subarray((i - first) * sector, (i - first + 1) * sector),
      );
    }
  }

  /** The slot a new block would take (it stays free until the block is stored). */
  #freeSlot(ref: BlockRef): number {
    if (this.#freeCount === 0) {
      throw new OutOfSpaceError(
        `Cannot write ${ref}: all ${this.#numSlots} blocks of the block store in ${this.#directory} are in use`,
      );
    }
    return this.#free[this.#freeCount - 1]!;
  }

  /** Counts `bytes` written to the data file; starts writeback every {@linkcode WRITEBACK_KICK_BYTES}. */
  #wrote(bytes: number): void {
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
    for (const slot of this.#dirty) {
      const ref = this.#slotRefs[slot];
      if (ref === undefined) {
        this.#index.writeAt(this.#recordOffset(slot), this.#zeroRecord);
      } else {
        record.fill(0);
        ref.writeTo(record, RECORD_REF_OFFSET_BYTES);
        const crcsAt = slot * this.#sectorsPerBlock;
        for (let i = 0; i < this.#sectorsPerBlock; i++) {
          view.setUint32(RECORD_CRCS_OFFSET_BYTES + 4 * i, this.#crcs[crcsAt + i]!, true);
        }
        writeU64(view, RECORD_GENERATION_OFFSET_BYTES, this.#generation++);
        view.setUint32(
          this.#recordCrcOffsetBytes,
          recordCrc(record, this.#recordCrcOffsetBytes, slot),
          true,
        );
        this.#index.writeAt(this.#recordOffset(slot), record);
      }
      this.#dirty.delete(slot);
    }
  }

  #verifySector(entry: Entry, index: number, bytes: Uint8Array): void {
    if (crc32(bytes) !== this.#crcs[entry.slot * this.#sectorsPerBlock + index]) {
      throw new BlockCorruptError(`Cannot read ${entry.ref}: sector ${index} fails its checksum`);
    }
  }

  /** The sector CRCs of a slot, as a new array. */
  #slotCrcs(slot: number): Uint32Array {
    const at = slot * this.#sectorsPerBlock;
    return this.#crcs.slice(at, at + this.#sectorsPerBlock);
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
  const dataFile = await Deno.open(dataPath, {
    read: true,
    write: true,
    create: true,
    truncate: true,
    mode: STORE_FILE_MODE,
  });
  try {
    preallocate(dataPath, 0, header.numSlots * header.blockSizeBytes);
    await dataFile.sync();
  } finally {
    dataFile.close();
  }
  const indexFile = await Deno.open(tempPath, {
    read: true,
    write: true,
    create: true,
    truncate: true,
    mode: STORE_FILE_MODE,
  });
  try {
    preallocate(tempPath, 0, INDEX_HEADER_REGION_BYTES + header.numSlots * header.recordSizeBytes);
    await writeHeaders(indexFile, header, tempPath);
  } finally {
    indexFile.close();
  }
  await Deno.rename(tempPath, `${directory}/${INDEX_FILE_NAME}`);
  await lock.sync();
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
): { header: Header; agree: boolean } {
  const region = new Uint8Array(INDEX_HEADER_REGION_BYTES);
  try {
    readFully(indexFile, 0, region, indexPath);
  } catch {
    throw new SyntaxError(`Cannot open ${indexPath}: it is shorter than its header`);
  }
  const copies = HEADER_COPY_OFFSETS_BYTES.map((offset) =>
    region.subarray(offset, offset + HEADER_COPY_SIZE_BYTES)
  );
  let best: Header | undefined;
  for (const copy of copies) {
    const header = decodeHeader(copy, indexPath);
    if (header && (!best || header.numSlots > best.numSlots)) best = header;
  }
  if (!best) {
    throw new SyntaxError(
      `Cannot open ${indexPath}: both copies of its header are damaged (not a Torus block store index?)`,
    );
  }
  const encoded = encodeHeader(best);
  const agree = copies.every((copy) => copy.every((byte, i) => byte === encoded[i]));
  return { header: best, agree };
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
  header: Header,
): Promise<void> {
  const files = [
    [dataFile, DATA_FILE_NAME, header.numSlots * header.blockSizeBytes],
    [
      indexFile,
      INDEX_FILE_NAME,
      INDEX_HEADER_REGION_BYTES + header.numSlots * header.recordSizeBytes,
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
  header: Header;
  dataPath: string;
  indexPath: string;
}

interface Scan {
  entries: Map<string, Entry>;
  /** Sector CRCs of every slot, from the records (`sectorsPerBlock` per slot). */
  crcs: Uint32Array;
  /** The next generation to write: one more than the highest seen. */
  generation: number;
}

/**
 * Loads the index: every record that passes its CRC is a stored block; every
 * other record is a free slot. When two records claim one ref (a crash while
 * shrinking, or while a deleted ref was rewritten elsewhere), the higher
 * generation wins and the other record is zeroed, durably, before the store
 * is used.
 */
async function scanIndex(layout: Layout): Promise<Scan> {
  const { header, indexFile, indexPath } = layout;
  const recordSize = header.recordSizeBytes;
  const crcOffset = recordCrcOffsetBytes(header.blockSizeBytes);
  const entries = new Map<string, Entry>();
  const sectors = header.blockSizeBytes / header.sectorSizeBytes;
  const crcs = new Uint32Array(header.numSlots * sectors);
  const generations = new Map<string, number>();
  const losers: number[] = [];
  let maxGeneration = 0;
  const recordsPerChunk = Math.max(1, Math.floor(INDEX_SCAN_CHUNK_BYTES / recordSize));
  const chunk = new Uint8Array(recordsPerChunk * recordSize);
  for (let firstSlot = 0; firstSlot < header.numSlots; firstSlot += recordsPerChunk) {
    const count = Math.min(recordsPerChunk, header.numSlots - firstSlot);
    const bytes = chunk.subarray(0, count * recordSize);
    readFully(indexFile, INDEX_HEADER_REGION_BYTES + firstSlot * recordSize, bytes, indexPath);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let i = 0; i < count; i++) {
      const at = i * recordSize;
      const low = view.getUint32(at + RECORD_GENERATION_OFFSET_BYTES, true);
      const high = view.getUint32(at + RECORD_GENERATION_OFFSET_BYTES + 4, true);
      if (low === 0 && high === 0) continue; // generation 0: a free record
      const slot = firstSlot + i;
      const crc = recordCrc(bytes.subarray(at, at + recordSize), crcOffset, slot);
      if (crc !== view.getUint32(at + crcOffset, true)) continue; // torn or damaged: free
      let ref: BlockRef;
      let generation: number;
      try {
        ref = BlockRef.fromBytes(bytes, at + RECORD_REF_OFFSET_BYTES);
        generation = readU64(view, at + RECORD_GENERATION_OFFSET_BYTES);
      } catch {
        continue; // passes its CRC yet does not decode: treat as free
      }
      maxGeneration = Math.max(maxGeneration, generation);
      const key = ref.key();
      const other = entries.get(key);
      if (other) {
        if (generations.get(key)! >= generation) {
          losers.push(slot);
          continue;
        }
        losers.push(other.slot);
      }
      entries.set(key, { ref, slot });
      generations.set(key, generation);
      for (let j = 0; j < sectors; j++) {
        crcs[slot * sectors + j] = view.getUint32(at + RECORD_CRCS_OFFSET_BYTES + 4 * j, true);
      }
    }
  }
  if (losers.length > 0) {
    const zero = new Uint8Array(recordSize);
    for (const slot of losers) {
      writeFully(indexFile, INDEX_HEADER_REGION_BYTES + slot * recordSize, zero, indexPath);
    }
    await indexFile.syncData();
  }
  return { entries, crcs, generation: maxGeneration + 1 };
}

/**
 * Grows the store to `numSlots` (the original's PR #346): extends and
 * preallocates both files (new records are zero, so free), makes them
 * durable, and only then writes the header copies. A crash before the header
 * leaves the old size, and `fitFiles` cuts the extra bytes.
 */
async function grow(layout: Layout, numSlots: number): Promise<void> {
  const { header, dataFile, indexFile, dataPath, indexPath } = layout;
  const oldData = header.numSlots * header.blockSizeBytes;
  preallocate(dataPath, oldData, numSlots * header.blockSizeBytes - oldData);
  await dataFile.sync();
  const oldIndex = INDEX_HEADER_REGION_BYTES + header.numSlots * header.recordSizeBytes;
  preallocate(indexPath, oldIndex, (numSlots - header.numSlots) * header.recordSizeBytes);
  await indexFile.sync();
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
  const { directory, header, dataFile, indexFile, dataPath, indexPath } = layout;
  const { entries } = scan;
  if (entries.size > numSlots) {
    throw new TorusError(
      `Cannot open block store in ${directory} with room for ${numSlots} blocks: it holds ${entries.size} blocks (use a larger size, or delete data first)`,
    );
  }
  const blockSize = header.blockSizeBytes;
  const recordSize = header.recordSizeBytes;
  const used = new Uint8Array(header.numSlots);
  for (const entry of entries.values()) used[entry.slot] = 1;
  const movers = [...entries.values()].filter((entry) => entry.slot >= numSlots);
  const targets: number[] = [];
  for (let slot = 0; slot < numSlots && targets.length < movers.length; slot++) {
    if (!used[slot]) targets.push(slot);
  }
  let generation = scan.generation;
  if (movers.length > 0) {
    const block = new Uint8Array(blockSize);
    for (const [i, entry] of movers.entries()) {
      readFully(dataFile, entry.slot * blockSize, block, dataPath);
      writeFully(dataFile, targets[i]! * blockSize, block, dataPath);
    }
    await dataFile.syncData();
    const record = new Uint8Array(recordSize);
    const view = new DataView(record.buffer);
    const crcOffset = recordCrcOffsetBytes(blockSize);
    for (const [i, entry] of movers.entries()) {
      const target = targets[i]!;
      readFully(indexFile, INDEX_HEADER_REGION_BYTES + entry.slot * recordSize, record, indexPath);
      writeU64(view, RECORD_GENERATION_OFFSET_BYTES, generation++);
      view.setUint32(crcOffset, recordCrc(record, crcOffset, target), true);
      writeFully(indexFile, INDEX_HEADER_REGION_BYTES + target * recordSize, record, indexPath);
      const sectors = blockSize / header.sectorSizeBytes;
      scan.crcs.copyWithin(target * sectors, entry.slot * sectors, (entry.slot + 1) * sectors);
      entry.slot = target;
    }
    await indexFile.syncData();
  }
  await writeHeaders(indexFile, { ...header, numSlots }, indexPath);
  await dataFile.truncate(numSlots * blockSize);
  await dataFile.sync();
  await indexFile.truncate(INDEX_HEADER_REGION_BYTES + numSlots * recordSize);
  await indexFile.sync();
  return generation;
}
