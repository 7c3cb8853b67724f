/**
 * Torus volumes as NBD exports. Export name = volume name; `VOLUME@SNAPSHOT`
 * is the snapshot, read-only; the empty name is the default export when
 * exactly one volume exists.
 *
 * All connections of this process to one volume share one open
 * {@linkcode File} (and so one write lock): a flush on any connection makes
 * every acknowledged write durable, which is what `CAN_MULTI_CONN` promises,
 * and nbdcopy's several connections work. The file is synced and its lock
 * released when the last connection closes.
 *
 * @module
 */
import type { File } from "../file/file.ts";
import type { Lease } from "../metadata/metadata_service.ts";
import { MetadataUnavailableError } from "../errors.ts";
import { ExportNotFoundError, type NbdExport, type NbdExportProvider } from "../nbd/export.ts";
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from "../nbd/protocol.ts";
import { openBlockFile, openSnapshot, type VolumeContext } from "./block_volume.ts";

/** Options of {@linkcode VolumeExports}. */
export interface VolumeExportsOptions {
  context: VolumeContext;
  /** The lease volume locks are bound to. */
  lease: () => Promise<Lease>;
  /** Serve every volume read-only (no locks taken). */
  readOnly?: boolean;
}

interface Shared {
  file: Promise<File>;
  users: number;
}

/** An NBD export provider over the volumes of a {@linkcode VolumeContext}. */
export class VolumeExports implements NbdExportProvider {
  #options: VolumeExportsOptions;
  #open = new Map<string, Shared>();
  /** Volumes whose last connection is closing: a new open waits for the lock's release. */
  #closing = new Map<string, Promise<void>>();

  constructor(options: VolumeExportsOptions) {
    this.#options = options;
  }

  async list(): Promise<string[]> {
    return (await this.#options.context.metadata.listVolumes()).map((volume) => volume.name);
  }

  async open(name: string): Promise<NbdExport> {
    const resolved = name === "" ? await this.#defaultName() : name;
    let shared = this.#open.get(resolved);
    const joining = shared !== undefined;
    if (!shared) {
      const file = this.#openFile(resolved);
      shared = { file, users: 0 };
      this.#open.set(resolved, shared);
      file.catch(() => {
        if (this.#open.get(resolved) === shared) this.#open.delete(resolved);
      });
    }
    shared.users++;
    let file: File;
    try {
      file = await shared.file;
      // A connection joining an open volume sees it grown by a resize since.
      if (joining && !file.readOnly) await this.#grow(file, resolved);
    } catch (error) {
      shared.users--;
      throw error;
    }
    return this.#export(resolved, file, shared);
  }

  /** Syncs and closes every open volume (at shutdown). */
  async close(): Promise<void> {
    const files = [...this.#open.values()].map((shared) => shared.file);
    this.#open.clear();
    await Promise.allSettled(files.map(async (file) => (await file).close()));
  }

  /** Grows `file` to its volume's size in the metadata; an unreachable metadata changes nothing. */
  async #grow(file: File, name: string): Promise<void> {
    let volume;
    try {
      volume = await this.#options.context.metadata.getVolume(name);
    } catch (error) {
      if (error instanceof MetadataUnavailableError) return;
      throw error;
    }
    await file.grow(volume);
  }

  async #defaultName(): Promise<string> {
    const names = await this.list();
    if (names.length !== 1) {
      throw new ExportNotFoundError(
        `No default export: there are ${names.length} volumes; name one (torusctl volume list)`,
      );
    }
    return names[0]!;
  }

  async #openFile(name: string): Promise<File> {
    await this.#closing.get(name);
    const { context } = this.#options;
    const at = name.lastIndexOf("@");
    if (at > 0) return await openSnapshot(context, name.slice(0, at), name.slice(at + 1));
    if (this.#options.readOnly) return await openBlockFile(context, name, { readOnly: true });
    return await openBlockFile(context, name, { lease: await this.#options.lease() });
  }

  #export(name: string, file: File, shared: Shared): NbdExport {
    let closed = false;
    return {
      name,
      sizeBytes: file.sizeBytes,
      readOnly: file.readOnly,
      multiConn: true,
      read: (offsetBytes, lengthBytes, into) => file.readAt(offsetBytes, lengthBytes, into),
      async write(offsetBytes, data, options) {
        await file.writeAt(data, offsetBytes);
        if (options.fua) await file.sync();
      },
      flush: () => file.sync(),
      // Sparse blocks (never written, or trimmed) are holes that read as zeros.
      blockStatus: (offsetBytes, lengthBytes) =>
        Promise.resolve(
          file.allocation(offsetBytes, lengthBytes).map((run) => ({
            lengthBytes: run.lengthBytes,
            flags: run.sparse ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0,
          })),
        ),
      trim: (offsetBytes, lengthBytes) => file.zero(offsetBytes, lengthBytes),
      async writeZeroes(offsetBytes, lengthBytes, options) {
        await file.zero(offsetBytes, lengthBytes);
        if (options.fua) await file.sync();
      },
      close: async () => {
        if (closed) return;
        closed = true;
        shared.users--;
        if (shared.users === 0 && this.#open.get(name) === shared) {
          this.#open.delete(name);
          const closing = file.close().finally(() => this.#closing.delete(name));
          this.#closing.set(name, closing);
          await closing;
        }
      },
    };
  }
}
