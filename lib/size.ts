/**
 * Parsing and printing byte sizes the way users write them: `512KiB`, `10G`,
 * `1.5GiB`, `4096`. Binary (KiB, MiB, …) and decimal (KB, K, MB, M, …)
 * suffixes both follow go-humanize, as the original's flags did.
 *
 * @module
 */

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 2 ** 10,
  m: 1e6,
  mb: 1e6,
  mib: 2 ** 20,
  g: 1e9,
  gb: 1e9,
  gib: 2 ** 30,
  t: 1e12,
  tb: 1e12,
  tib: 2 ** 40,
  p: 1e15,
  pb: 1e15,
  pib: 2 ** 50,
};

/**
 * Parses a byte size.
 *
 * @throws {SyntaxError} when `text` is not a size.
 * @example Usage
 * ```ts
 * import { parseSize } from "./size.ts";
 * if (parseSize("512KiB") !== 524288) throw new Error("wrong");
 * ```
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match ? UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new SyntaxError(
      `Cannot parse size "${text}": expected a number with an optional unit such as 512KiB, 10GiB or 1G`,
    );
  }
  const value = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(value)) {
    throw new SyntaxError(`Cannot parse size "${text}": the value is too large`);
  }
  return value;
}

/** A size request: a number of bytes, or a percentage of a filesystem. */
export type SizeSpec = { bytes: number } | { percent: number };

/**
 * Parses `--size`: bytes with units, or `N%` (1 to 100) of the filesystem.
 *
 * @throws {SyntaxError} when `text` is neither.
 */
export function parseSizeSpec(text: string): SizeSpec {
  const match = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text);
  if (match) {
    const percent = Number(match[1]);
    if (!(percent > 0 && percent <= 100)) {
      throw new SyntaxError(`Cannot parse size "${text}": a percentage must be between 1 and 100`);
    }
    return { percent };
  }
  return { bytes: parseSize(text) };
}

/**
 * Formats bytes with a binary unit, as `torusctl` tables print them.
 *
 * @example Usage
 * ```ts
 * import { formatSize } from "./size.ts";
 * if (formatSize(1536) !== "1.5 KiB") throw new Error("wrong");
 * ```
 */
export function formatSize(bytes: number, options: { si?: boolean } = {}): string {
  const base = options.si ? 1000 : 1024;
  const names = options.si
    ? ["B", "kB", "MB", "GB", "TB", "PB"]
    : ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let index = 0;
  while (value >= base && index < names.length - 1) {
    value /= base;
    index++;
  }
  const text = index === 0 ? String(value) : value.toFixed(value < 10 ? 1 : 0);
  return `${text.replace(/\.0$/, "")} ${names[index]}`;
}
