/**
 * The layout of a data directory:
 *
 * ```
 * <data-dir>/metadata/uuid       this node's identity (a UUID, created once)
 * <data-dir>/metadata/torus.db   the embedded metadata store (SQLite, WAL)
 * <data-dir>/block/              the file block store
 * ```
 *
 * @module
 */
import { join } from "node:path";

/** Paths inside a data directory. */
export interface DataDirPaths {
  root: string;
  metadataDir: string;
  uuidFile: string;
  metadataDb: string;
  blockDir: string;
  /** The lease of the process that holds the block store, kept for its successor. */
  storeLeaseFile: string;
}

/** The paths of data directory `root`. */
export function dataDirPaths(root: string): DataDirPaths {
  const metadataDir = join(root, "metadata");
  return {
    root,
    metadataDir,
    uuidFile: join(metadataDir, "uuid"),
    metadataDb: join(metadataDir, "torus.db"),
    blockDir: join(root, "block"),
    storeLeaseFile: join(metadataDir, "store.lease"),
  };
}

/** Creates the data directory's folders (mode 0700). */
export async function ensureDataDir(paths: DataDirPaths): Promise<void> {
  await Deno.mkdir(paths.metadataDir, { recursive: true, mode: 0o700 });
  await Deno.mkdir(paths.blockDir, { recursive: true, mode: 0o700 });
}

/** Reads this node's UUID, creating it on first use. */
export async function readOrCreateUuid(paths: DataDirPaths): Promise<string> {
  try {
    const text = (await Deno.readTextFile(paths.uuidFile)).trim();
    if (/^[0-9a-f-]{36}$/.test(text)) return text;
    throw new SyntaxError(`Cannot use ${paths.uuidFile}: "${text}" is not a UUID`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const uuid = crypto.randomUUID();
  const temp = `${paths.uuidFile}.tmp`;
  await Deno.writeTextFile(temp, uuid + "\n", { mode: 0o600 });
  await Deno.rename(temp, paths.uuidFile);
  return uuid;
}

/** True when `root` looks like a data directory (has metadata). */
export async function dataDirExists(root: string): Promise<boolean> {
  try {
    await Deno.stat(dataDirPaths(root).metadataDb);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
