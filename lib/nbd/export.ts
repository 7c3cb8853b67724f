/**
 * What the NBD server serves: an {@linkcode NbdExport} (a range of bytes with
 * read, write, flush, trim and write-zeroes) found by name through an
 * {@linkcode NbdExportProvider}. The server knows nothing of volumes or
 * blocks; Torus adapts its volumes to these interfaces.
 *
 * Errors cross this boundary by `name`, so that the server does not depend on
 * the storage engine's classes:
 *
 * - from `open`: {@linkcode ExportNotFoundError} (or a `VolumeNotFoundError`
 *   or `SnapshotNotFoundError`) becomes `NBD_REP_ERR_UNKNOWN`; any other error
 *   (e.g. "volume X is in use") becomes `NBD_REP_ERR_POLICY` with its message
 *   (the protocol has no "unavailable" reply);
 * - from I/O: `RangeError` → `EINVAL`, `OutOfSpaceError` → `ENOSPC`,
 *   `ReadOnlyError` → `EPERM`, anything else → `EIO`.
 *
 * @module
 */
import { AssertionError } from "../assert.ts";
import { TorusError } from "../errors.ts";
import {
  type BlockStatusExtent,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_UNKNOWN,
} from "./protocol.ts";

/** Options of {@linkcode NbdExport.write}. */
export interface NbdWriteOptions {
  /** Force unit access: the data is durable before the promise resolves. */
  fua: boolean;
}

/** Options of {@linkcode NbdExport.writeZeroes}. */
export interface NbdWriteZeroesOptions {
  /** Force unit access: the zeroes are durable before the promise resolves. */
  fua: boolean;
  /** The range must stay allocated: do not punch a hole. */
  noHole: boolean;
}

/**
 * One opened export: what one NBD connection reads and writes. The server
 * opens one per connection and closes it when the connection ends, and it
 * issues many calls at once (up to its in-flight limit); the export orders
 * them as it must.
 *
 * The server checks every range against `sizeBytes` and refuses writes to a
 * read-only export before calling, so an export sees only valid requests.
 */
export interface NbdExport {
  /** The export's canonical name (the default export `""` resolves to one). */
  readonly name: string;
  /** Size in bytes; at most 2^53 - 1. */
  readonly sizeBytes: number;
  /** Whether every write must be refused with `EPERM`. */
  readonly readOnly: boolean;
  /**
   * Whether a flush or FUA write on one connection makes the data durable
   * and visible to every other connection to the same export (advertised
   * as `NBD_FLAG_CAN_MULTI_CONN`, which lets clients open several
   * connections).
   */
  readonly multiConn: boolean;

  /**
   * Reads `lengthBytes` bytes at `offsetBytes`; resolves to exactly that many
   * bytes. With `into` (of exactly `lengthBytes`), the export may fill it and
   * return it (the server's pooled reply buffer); it may also return another
   * array.
   */
  read(offsetBytes: number, lengthBytes: number, into?: Uint8Array): Promise<Uint8Array>;
  /**
   * Writes `data` at `offsetBytes`. The export must not keep `data` after the
   * promise settles: the server reuses the buffer.
   */
  write(offsetBytes: number, data: Uint8Array, options: NbdWriteOptions): Promise<void>;
  /** Makes every write that completed before this call durable. */
  flush(): Promise<void>;
  /** Discards a range; it then reads back as zeroes. */
  trim(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Writes zeroes over a range. */
  writeZeroes(
    offsetBytes: number,
    lengthBytes: number,
    options: NbdWriteZeroesOptions,
  ): Promise<void>;
  /**
   * The allocation of a range, from `offsetBytes`: consecutive extents with
   * `NBD_STATE_HOLE` / `NBD_STATE_ZERO` flags, covering at least the start
   * of the range (the server clamps and merges them). Absent: everything
   * reads as allocated data.
   */
  blockStatus?(offsetBytes: number, lengthBytes: number): Promise<BlockStatusExtent[]>;
  /** Releases the export (and any lock on it). Called once, after the last request. */
  close(): Promise<void>;
}

/** Finds exports by name. */
export interface NbdExportProvider {
  /** The names `NBD_OPT_LIST` reports. */
  list(): Promise<string[]>;
  /**
   * Opens an export; `""` asks for the default export.
   *
   * @throws {ExportNotFoundError} when there is no such export.
   */
  open(name: string): Promise<NbdExport>;
}

/** No export of that name (or no default export). */
export class ExportNotFoundError extends TorusError {}

/** Error names that mean "no such export". */
const NOT_FOUND_ERROR_NAMES: ReadonlySet<string> = new Set([
  "ExportNotFoundError",
  "VolumeNotFoundError",
  "SnapshotNotFoundError",
]);

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : "";
}

/** A message for a client or a log, never more than a line. */
export function errorMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const line = text.split("\n", 1)[0] ?? "";
  return line === "" ? errorName(error) || "error" : line;
}

/**
 * The NBD errno that reports an error thrown by an export's I/O.
 *
 * @throws {AssertionError} rethrown: a bug is never reported as `EIO`.
 */
export function errnoForError(error: unknown): number {
  if (error instanceof AssertionError) throw error;
  if (error instanceof RangeError) return NBD_EINVAL;
  switch (errorName(error)) {
    case "OutOfSpaceError":
      return NBD_ENOSPC;
    case "ReadOnlyError":
      return NBD_EPERM;
    default:
      return NBD_EIO;
  }
}

/**
 * The option error reply type that reports an error thrown by
 * {@linkcode NbdExportProvider.open}.
 *
 * @throws {AssertionError} rethrown.
 */
export function optionErrorForOpenError(error: unknown): number {
  if (error instanceof AssertionError) throw error;
  return NOT_FOUND_ERROR_NAMES.has(errorName(error)) ? NBD_REP_ERR_UNKNOWN : NBD_REP_ERR_POLICY;
}
