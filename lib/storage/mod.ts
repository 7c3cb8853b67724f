/**
 * Block stores: a node's local store of fixed-size blocks keyed by
 * {@linkcode BlockRef}, behind the {@linkcode BlockStore} contract.
 *
 * - `file_block_store.ts`: {@linkcode FileBlockStore}, the durable store of
 *   torusd (a data file and a checksummed index, Linux only), whose large
 *   reads and writes run on {@linkcode IoThread} (`io_thread.ts`).
 * - `memory_block_store.ts`: {@linkcode MemoryBlockStore}, for tests.
 * - `store_size.ts`: the byte size of a store from a `--size` request.
 * - `scrubber.ts`: {@linkcode Scrubber}, background verification of every
 *   stored block's checksums.
 *
 * @module
 */
export {
  type BlockRange,
  type BlockRead,
  type BlockStore,
  checkRange,
  copyBlockThrough,
} from "./block_store.ts";
export {
  DATA_FILE_NAME,
  DATA_WRITE_PIECE_BYTES,
  DELTA_FILE_NAME,
  FileBlockStore,
  type FileBlockStoreIo,
  type FileBlockStoreOptions,
  INDEX_FILE_NAME,
  INDEX_FORMAT_VERSION,
  INDEX_HEADER_REGION_BYTES,
  INDEX_MAGIC,
  indexRecordSizeBytes,
  packedDeltaSectorsMax,
  WRITEBACK_KICK_BYTES,
} from "./file_block_store.ts";
export {
  IO_THREAD_DEPTH,
  IO_THREAD_MIN_BYTES,
  type IoResult,
  IoThread,
  ioThreadStats,
} from "./io_thread.ts";
export { MemoryBlockStore, type MemoryBlockStoreOptions } from "./memory_block_store.ts";
export { filesystemSizeBytes, resolveStoreSizeBytes, STORE_BLOCKS_MIN } from "./store_size.ts";
export {
  describeRef,
  SCRUB_BATCH_BYTES,
  SCRUB_BYTES_PER_SECOND_DEFAULT,
  SCRUB_RECENT_CORRUPT_MAX,
  SCRUB_RECHECK_DELAY_MS,
  SCRUB_REST_MS,
  type ScrubBatch,
  Scrubber,
  type ScrubberOptions,
  type ScrubStatus,
} from "./scrubber.ts";
