/**
 * An in-memory {@linkcode NbdExport} and provider, for tests and
 * measurements of the NBD server. Never what a user's data lives in.
 *
 * Data is kept in sparse pages: untouched and trimmed ranges cost nothing,
 * so a large export is cheap until it is written.
 *
 * @module
 */
import { assert } from "../assert.ts";
import { ClosedError, ReadOnlyError, VolumeInUseError } from "../errors.ts";
import {
  ExportNotFoundError,
  type NbdExport,
  type NbdExportProvider,
  type NbdWriteOptions,
  type NbdWriteZeroesOptions,
} from "./export.ts";
import { type BlockStatusExtent, NBD_STATE_HOLE, NBD_STATE_ZERO } from "./protocol.ts";

/** Bytes of one page of a memory export. */
export const MEMORY_EXPORT_PAGE_BYTES = 64 * 1024;

/** The description of one memory export. */
export interface MemoryExportSpec {
  /** The export's name. */
  name: string;
  /** The export's size in bytes. */
  sizeBytes: number;
  /** Refuse writes. Default false. */
  readOnly?: boolean;
  /** Advertise `NBD_FLAG_CAN_MULTI_CONN`. Default true: all opens share the pages. */
  multiConn?: boolean;
  /** Refuse a second open while one is open ("in use"). Default false. */
  exclusive?: boolean;
}

/** The shared bytes of one export, in sparse pages. */
class SparsePages {
  readonly sizeBytes: number;
  #pages = new Map<number, Uint8Array>();

  constructor(sizeBytes: number) {
    this.sizeBytes = sizeBytes;
  }

  get allocatedPages(): number {
    return this.#pages.size;
  }

  read(offsetBytes: number, lengthBytes: number, into?: Uint8Array): Uint8Array {
    const out = into ?? new Uint8Array(lengthBytes);
    this.#each(offsetBytes, lengthBytes, (index, from, to, at) => {
      const page = this.#pages.get(index);
      // Only the holes of a caller's buffer need zeroes (a new one has them).
      if (page !== undefined) out.set(page.subarray(from, to), at);
      else if (into !== undefined) out.fill(0, at, at + (to - from));
    });
    return out;
  }

  write(offsetBytes: number, data: Uint8Array): void {
    this.#each(offsetBytes, data.length, (index, from, to, at) => {
      let page = this.#pages.get(index);
      if (page === undefined) {
        page = new Uint8Array(MEMORY_EXPORT_PAGE_BYTES);
        this.#pages.set(index, page);
      }
      page.set(data.subarray(at, at + (to - from)), from);
    });
  }

  /** Which parts of a range are unallocated pages (holes), as extents covering it. */
  allocation(offsetBytes: number, lengthBytes: number): BlockStatusExtent[] {
    const extents: BlockStatusExtent[] = [];
    this.#each(offsetBytes, lengthBytes, (index, from, to) => {
      const flags = this.#pages.has(index) ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO;
      const last = extents.at(-1);
      if (last !== undefined && last.flags === flags) last.lengthBytes += to - from;
      else extents.push({ lengthBytes: to - from, flags });
    });
    return extents;
  }

  /** Zeroes a range; whole pages are dropped unless `keepAllocated`. */
  zero(offsetBytes: number, lengthBytes: number, keepAllocated: boolean): void {
    this.#each(offsetBytes, lengthBytes, (index, from, to) => {
      const page = this.#pages.get(index);
      const whole = from === 0 && to === MEMORY_EXPORT_PAGE_BYTES;
      if (page === undefined) {
        if (keepAllocated) this.#pages.set(index, new Uint8Array(MEMORY_EXPORT_PAGE_BYTES));
      } else if (whole && !keepAllocated) {
        this.#pages.delete(index);
      } else {
        page.fill(0, from, to);
      }
    });
  }

  #each(
    offsetBytes: number,
    lengthBytes: number,
    visit: (index: number, from: number, to: number, at: number) => void,
  ): void {
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.sizeBytes) {
      throw new RangeError(
        `range ${offsetBytes}+${lengthBytes} is outside the export of ${this.sizeBytes} bytes`,
      );
    }
    let position = offsetBytes;
    const end = offsetBytes + lengthBytes;
    while (position < end) {
      const index = Math.floor(position / MEMORY_EXPORT_PAGE_BYTES);
      const from = position - index * MEMORY_EXPORT_PAGE_BYTES;
      const to = Math.min(MEMORY_EXPORT_PAGE_BYTES, from + (end - position));
      visit(index, from, to, position - offsetBytes);
      position += to - from;
    }
  }
}

/** One open handle on a memory export. */
class MemoryExport implements NbdExport {
  readonly name: string;
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  readonly multiConn: boolean;
  #pages: SparsePages;
  #onClose: () => void;
  #closed = false;

  constructor(spec: Required<MemoryExportSpec>, pages: SparsePages, onClose: () => void) {
    this.name = spec.name;
    this.sizeBytes = spec.sizeBytes;
    this.readOnly = spec.readOnly;
    this.multiConn = spec.multiConn;
    this.#pages = pages;
    this.#onClose = onClose;
  }

  // deno-lint-ignore require-await
  async read(offsetBytes: number, lengthBytes: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#checkOpen();
    return this.#pages.read(offsetBytes, lengthBytes, into);
  }

  // deno-lint-ignore require-await
  async write(offsetBytes: number, data: Uint8Array, _options: NbdWriteOptions): Promise<void> {
    this.#checkWritable();
    this.#pages.write(offsetBytes, data);
  }

  // deno-lint-ignore require-await
  /** Unallocated pages are holes. */
  blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockStatusExtent[]> {
    this.#checkOpen();
    return Promise.resolve(this.#pages.allocation(offsetBytes, lengthBytes));
  }

  async flush(): Promise<void> {
    this.#checkOpen();
  }

  // deno-lint-ignore require-await
  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.#checkWritable();
    this.#pages.zero(offsetBytes, lengthBytes, false);
  }

  // deno-lint-ignore require-await
  async writeZeroes(
    offsetBytes: number,
    lengthBytes: number,
    options: NbdWriteZeroesOptions,
  ): Promise<void> {
    this.#checkWritable();
    this.#pages.zero(offsetBytes, lengthBytes, options.noHole);
  }

  // deno-lint-ignore require-await
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#onClose();
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError(`export ${this.name} is closed`);
  }

  #checkWritable(): void {
    this.#checkOpen();
    if (this.readOnly) throw new ReadOnlyError(`export ${this.name} is read-only`);
  }
}

interface Entry {
  spec: Required<MemoryExportSpec>;
  pages: SparsePages;
  openCount: number;
}

/**
 * A provider of memory exports. The first export listed is the default
 * export (name `""`). Every open of a name shares the same bytes.
 *
 * @example Usage
 * ```ts
 * import { MemoryExportProvider } from "./memory_export.ts";
 * const provider = new MemoryExportProvider([{ name: "disk", sizeBytes: 1 << 20 }]);
 * const disk = await provider.open("disk");
 * await disk.write(0, new Uint8Array([7]), { fua: false });
 * if ((await disk.read(0, 1))[0] !== 7) throw new Error("wrong byte");
 * await disk.close();
 * ```
 */
export class MemoryExportProvider implements NbdExportProvider {
  #entries = new Map<string, Entry>();
  #defaultName: string | undefined;

  /**
   * Creates the exports, all zero.
   *
   * @throws {RangeError} on a bad size; {@linkcode TypeError} on a duplicate name.
   */
  constructor(specs: readonly MemoryExportSpec[]) {
    for (const spec of specs) {
      if (!Number.isSafeInteger(spec.sizeBytes) || spec.sizeBytes < 0) {
        throw new RangeError(`bad export size ${spec.sizeBytes}`);
      }
      if (this.#entries.has(spec.name)) throw new TypeError(`duplicate export ${spec.name}`);
      const full: Required<MemoryExportSpec> = {
        readOnly: false,
        multiConn: true,
        exclusive: false,
        ...spec,
      };
      this.#entries.set(spec.name, {
        spec: full,
        pages: new SparsePages(spec.sizeBytes),
        openCount: 0,
      });
      this.#defaultName ??= spec.name;
    }
  }

  /** Exports open right now, over every name (for leak checks). */
  get openCount(): number {
    let total = 0;
    for (const entry of this.#entries.values()) total += entry.openCount;
    return total;
  }

  /** Pages allocated over every export (for memory checks). */
  get allocatedPages(): number {
    let total = 0;
    for (const entry of this.#entries.values()) total += entry.pages.allocatedPages;
    return total;
  }

  list(): Promise<string[]> {
    return Promise.resolve([...this.#entries.keys()]);
  }

  open(name: string): Promise<NbdExport> {
    const entry = this.#entries.get(name === "" ? this.#defaultName ?? "" : name);
    if (entry === undefined) {
      return Promise.reject(new ExportNotFoundError(`export ${JSON.stringify(name)} not found`));
    }
    if (entry.spec.exclusive && entry.openCount > 0) {
      return Promise.reject(new VolumeInUseError(`volume ${entry.spec.name} is in use`));
    }
    entry.openCount++;
    return Promise.resolve(
      new MemoryExport(entry.spec, entry.pages, () => {
        entry.openCount--;
        assert(entry.openCount >= 0, "export closed more often than opened");
      }),
    );
  }
}
