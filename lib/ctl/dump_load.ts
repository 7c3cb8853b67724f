/**
 * `block dump` and `block load`: copy a volume to a file (or stdout) and a
 * file into a new volume.
 *
 * Dump reads a consistent state: it saves a temporary snapshot, reads it
 * (no lock: the volume may stay attached), and deletes the snapshot. Load
 * creates the volume, writes it, and syncs; a failure deletes the volume
 * again, so nothing half-loaded is left behind.
 *
 * @module
 */
import { openBlockFile, openSnapshot } from "../block/block_volume.ts";
import type { TorusNode } from "../node/torus_node.ts";
import { parseSize } from "../size.ts";

/** Bytes copied per step: a multiple of every block size, bounded for memory. */
export const COPY_CHUNK_BYTES = 4 * 1024 * 1024;

/** Called after each chunk with bytes done and bytes in all. */
export type Progress = (doneBytes: number, totalBytes: number) => void;

/** Writes the whole volume to `target`; returns the bytes copied. */
export async function dumpVolume(
  node: TorusNode,
  name: string,
  target: WritableStreamDefaultWriter<Uint8Array>,
  onProgress: Progress = () => {},
): Promise<number> {
  const context = await node.volumes();
  const volume = await node.metadata.getVolume(name);
  const temporary = `temp-dump-${Deno.pid}-${node.clock.nowMs()}`;
  await node.metadata.saveSnapshot(volume.id, temporary);
  try {
    const file = await openSnapshot(context, name, temporary);
    let done = 0;
    while (done < file.sizeBytes) {
      const length = Math.min(COPY_CHUNK_BYTES, file.sizeBytes - done);
      await target.write(await file.readAt(done, length));
      done += length;
      onProgress(done, file.sizeBytes);
    }
    await file.close();
    return done;
  } finally {
    await node.metadata.deleteSnapshot(volume.id, temporary);
  }
}

/**
 * Creates volume `name` from `source` (of `sourceBytes`), `sizeText` big or
 * the size of the source; returns the bytes copied.
 *
 * @throws {RangeError} when SIZE is smaller than the source.
 */
export async function loadVolume(
  node: TorusNode,
  source: ReadableStreamDefaultReader<Uint8Array>,
  sourceBytes: number,
  name: string,
  sizeText: string | undefined,
  onProgress: Progress = () => {},
): Promise<number> {
  const sizeBytes = sizeText === undefined ? sourceBytes : parseSize(sizeText);
  if (sizeBytes < sourceBytes || sizeBytes <= 0) {
    throw new RangeError(
      `Cannot load ${sourceBytes} bytes into volume "${name}": SIZE must be at least the file's size and positive`,
    );
  }
  const context = await node.volumes();
  await node.metadata.createVolume(name, sizeBytes);
  try {
    const file = await openBlockFile(context, name, { lease: (await node.lease()).lease });
    try {
      // One chunk buffer, filled in place from the stream and written when full.
      const chunk = new Uint8Array(COPY_CHUNK_BYTES);
      let filled = 0;
      let done = 0;
      const flushChunk = async () => {
        if (done + filled > sizeBytes) {
          throw new RangeError(
            `Cannot load into volume "${name}": the input grew past ${sizeBytes} bytes`,
          );
        }
        await file.writeAt(chunk.subarray(0, filled), done);
        done += filled;
        filled = 0;
        onProgress(done, sourceBytes);
      };
      for (;;) {
        const { value, done: ended } = await source.read();
        let offset = 0;
        while (value && offset < value.length) {
          const length = Math.min(value.length - offset, chunk.length - filled);
          chunk.set(value.subarray(offset, offset + length), filled);
          filled += length;
          offset += length;
          if (filled === chunk.length) await flushChunk();
        }
        if (ended) break;
      }
      if (filled > 0) await flushChunk();
      await file.sync();
      return done;
    } finally {
      await file.close();
    }
  } catch (error) {
    await node.metadata.deleteVolume(name).catch(() => {});
    throw error;
  }
}
