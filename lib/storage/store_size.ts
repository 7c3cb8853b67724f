/**
 * Turns a `--size` request into the byte size of the file block store:
 * bytes as given, or a percentage of the filesystem that holds the store.
 *
 * @module
 */
import { statfs } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { BLOCK_SIZE_BYTES_DEFAULT } from "../constants.ts";
import { formatSize, type SizeSpec } from "../size.ts";

/** The fewest blocks a store may hold. */
export const STORE_BLOCKS_MIN = 2;

/**
 * The size of the filesystem holding `directory`, in bytes. The directory
 * need not exist yet: its nearest existing ancestor is measured. Uses
 * statfs(2) through `node:fs` (Deno has no `Deno.statfs`; needs
 * `--allow-sys=statfs` and read access).
 */
export async function filesystemSizeBytes(directory: string): Promise<number> {
  let path = resolve(directory);
  for (;;) {
    try {
      const stats = await statfs(path);
      return stats.blocks * stats.bsize;
    } catch (error) {
      const parent = dirname(path);
      const missing = error instanceof Deno.errors.NotFound ||
        (error instanceof Error && "code" in error && error.code === "ENOENT");
      if (!missing || parent === path) throw error;
      path = parent;
    }
  }
}

/**
 * Resolves a size request for a store in `directory`: `{ bytes }` as given,
 * or `{ percent }` of the total size of the filesystem holding `directory`.
 * The result is rounded down to whole blocks of `blockSizeBytes`.
 *
 * @throws {RangeError} when the result holds fewer than {@linkcode STORE_BLOCKS_MIN} blocks.
 * @example Usage
 * ```ts ignore
 * import { resolveStoreSizeBytes } from "./store_size.ts";
 * const bytes = await resolveStoreSizeBytes({ percent: 10 }, "/var/lib/torus/block");
 * ```
 */
export async function resolveStoreSizeBytes(
  spec: SizeSpec,
  directory: string,
  blockSizeBytes: number = BLOCK_SIZE_BYTES_DEFAULT,
): Promise<number> {
  let requested: number;
  let what: string;
  if ("bytes" in spec) {
    requested = spec.bytes;
    what = `${requested} bytes`;
  } else {
    const total = await filesystemSizeBytes(directory);
    requested = Math.floor((total * spec.percent) / 100);
    what = `${spec.percent}% of the ${formatSize(total)} filesystem holding ${directory} (${
      formatSize(requested)
    })`;
  }
  const blocks = Number.isSafeInteger(requested) && requested > 0
    ? Math.floor(requested / blockSizeBytes)
    : 0;
  if (blocks < STORE_BLOCKS_MIN) {
    throw new RangeError(
      `Cannot use a block store of ${what}: it must hold at least ${STORE_BLOCKS_MIN} blocks of ${
        formatSize(blockSizeBytes)
      } (${STORE_BLOCKS_MIN * blockSizeBytes} bytes)`,
    );
  }
  return blocks * blockSizeBytes;
}
