/**
 * Files: one open volume, read and written at byte offsets.
 *
 * A {@linkcode File} writes in sessions under a new INode number, and
 * `sync()` commits the session as the volume's current INode with a fenced
 * compare-and-swap. Blocks of committed INodes are copied on write, so
 * snapshots are never disturbed. `rw_lock.ts` holds the locks it orders
 * requests with.
 *
 * @module
 */
export { File, type FileOptions, type ReclaimReason, type Whence } from "./file.ts";
