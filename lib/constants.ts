/**
 * Every limit of Torus in one place, each with its unit and the reason for its
 * value. Relationships between limits are asserted when the module loads.
 *
 * @module
 */
import { assert } from "./assert.ts";

/** Default block size: the original's 512 KiB, a balance of metadata size and I/O size. */
export const BLOCK_SIZE_BYTES_DEFAULT = 512 * 1024;
/** Smallest block size `init` accepts; the original's tests used 256-byte blocks. */
export const BLOCK_SIZE_BYTES_MIN = 256;
/** Largest block size: keeps one block well inside a peer frame and a buffer pool. */
export const BLOCK_SIZE_BYTES_MAX = 16 * 1024 * 1024;
/**
 * Unit of checksumming and partial I/O inside a block. A 4 KiB write or read
 * touches one sector, not the whole block; blocks smaller than this are one sector.
 */
export const SECTOR_SIZE_BYTES = 4096;
/** Largest volume size: 2^50 bytes (1 PiB) keeps byte offsets exact in a JS number. */
export const VOLUME_SIZE_BYTES_MAX = 2 ** 50;
/** Largest 40-bit volume id (exclusive bound, as in the original's `VolumeMax`). */
export const VOLUME_ID_MAX = 0xff_ffff_ffff;
/** Longest volume or snapshot name, in bytes of UTF-8. */
export const NAME_LENGTH_BYTES_MAX = 255;
/** Default lease time to live of a process holding volume locks (original: 30 s). */
export const LEASE_TTL_MS_DEFAULT = 30_000;
/** How often a lease holder renews its lease (original heartbeat: 5 s). */
export const LEASE_RENEW_INTERVAL_MS = 5_000;
/**
 * Dirty blocks a file keeps in memory before it writes the oldest one out.
 * Bounds memory to this many blocks per open file.
 */
export const FILE_DIRTY_BLOCKS_MAX = 64;
/** Most blocks an INode may list: a 1 PiB volume of 256-byte blocks would exceed memory. */
export const INODE_BLOCKS_MAX = 16 * 1024 * 1024;
/** Longest replication a `rep=N` layer or a ring may ask for. */
export const REPLICAS_MAX = 8;
/** Default size of the file block store when `--size` is not given. */
export const STORE_SIZE_BYTES_DEFAULT = 1024 * 1024 * 1024;

assert(BLOCK_SIZE_BYTES_MIN <= BLOCK_SIZE_BYTES_DEFAULT);
assert(BLOCK_SIZE_BYTES_DEFAULT <= BLOCK_SIZE_BYTES_MAX);
assert(BLOCK_SIZE_BYTES_DEFAULT % SECTOR_SIZE_BYTES === 0);
assert(VOLUME_SIZE_BYTES_MAX <= Number.MAX_SAFE_INTEGER);
assert(LEASE_RENEW_INTERVAL_MS * 3 < LEASE_TTL_MS_DEFAULT);
