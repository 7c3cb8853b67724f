/**
 * Incremental export and import of a volume (`torusctl block diff` and
 * `block apply-diff`), for backups and copies to another cluster: the blocks
 * that changed between two snapshots, as a stream another volume can apply.
 *
 * What changed is read off the two INodes, not the data: a committed INode's
 * block is never changed in place (the first write after a sync copies it
 * under a new ref), so an index whose block ref is the same in both INodes
 * holds the same bytes, and only the others are read and sent. A block that
 * became sparse (trimmed) is sent as a zero extent, without data.
 *
 * The stream (all integers little-endian):
 *
 * | field | bytes |
 * | --- | --- |
 * | magic `TORUSDF1` | 8 |
 * | volume size at the TO snapshot | 8 |
 * | FROM snapshot name (empty: from nothing), length then UTF-8 | 2 + n |
 * | TO snapshot name, length then UTF-8 | 2 + n |
 * | records: kind `1` data (offset 8, length 4, bytes), kind `2` zeros (offset 8, length 4) | … |
 * | end: kind `0xff`, then the CRC-32 of every byte before it | 1 + 4 |
 *
 * Applying checks that the target volume is at the FROM snapshot (or does
 * not exist yet, for a stream from nothing), grows it if the stream's size
 * is larger, then checks and writes each record as it arrives: its kind,
 * its range against the size; at the end the CRC and that nothing follows.
 * Only then does it sync and save snapshot TO on the target, so that the
 * next increment (FROM = this TO) applies after it. A failure puts the
 * volume back (restored to FROM, or deleted if the apply created it).
 *
 * @module
 */
import {
  createBlockVolume,
  findSnapshot,
  loadINode,
  openBlockFile,
  openSnapshot,
  restoreSnapshot,
} from "../block/block_volume.ts";
import { LayerKind } from "../blockset/layer.ts";
import { BLOCK_REF_SIZE_BYTES } from "../core/block_ref.ts";
import { crc32 } from "../core/crc32.ts";
import { NAME_LENGTH_BYTES_MAX } from "../constants.ts";
import { TorusError, VolumeNotFoundError } from "../errors.ts";
import type { INodeRecord } from "../inode/inode_store.ts";
import type { TorusNode } from "../node/torus_node.ts";
import { parseSnapshotName } from "./volume_ops.ts";

/** The stream's first 8 bytes. */
export const DIFF_MAGIC = "TORUSDF1";
/** Record kinds. */
export const DiffRecord = { data: 1, zero: 2, end: 0xff } as const;
/** Longest data record, in bytes: a block of the largest block size. */
export const DIFF_RECORD_BYTES_MAX = 16 * 1024 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The base layer's refs, 24 bytes per block index; null when the layout is not one ref per block. */
function baseRefs(record: INodeRecord, blockSizeBytes: number): Uint8Array | null {
  if (record.layers.some((layer) => layer.type === LayerKind.rep)) return null;
  const base = record.layers.find((layer) => layer.type === LayerKind.base);
  const blocks = Math.ceil(record.sizeBytes / blockSizeBytes);
  if (base === undefined || base.content.length < blocks * BLOCK_REF_SIZE_BYTES) return null;
  return base.content;
}

function refAt(refs: Uint8Array | null, index: number): Uint8Array | null {
  if (refs === null) return null;
  const start = index * BLOCK_REF_SIZE_BYTES;
  if (start + BLOCK_REF_SIZE_BYTES > refs.length) return new Uint8Array(BLOCK_REF_SIZE_BYTES);
  return refs.subarray(start, start + BLOCK_REF_SIZE_BYTES);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A writer that keeps the running CRC-32 of what it wrote. */
class ChecksummedWriter {
  crc = 0;
  #target: WritableStreamDefaultWriter<Uint8Array>;
  constructor(target: WritableStreamDefaultWriter<Uint8Array>) {
    this.#target = target;
  }
  async write(bytes: Uint8Array): Promise<void> {
    this.crc = crc32(bytes, this.crc);
    await this.#target.write(bytes);
  }
}

function u64(value: number): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(value), true);
  return bytes;
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, true);
  return bytes;
}

function nameField(name: string): Uint8Array {
  const text = encoder.encode(name);
  const bytes = new Uint8Array(2 + text.length);
  new DataView(bytes.buffer).setUint16(0, text.length, true);
  bytes.set(text, 2);
  return bytes;
}

/** What {@linkcode exportDiff} sent. */
export interface DiffSummary {
  /** Blocks sent with their data. */
  dataBlocks: number;
  /** Blocks sent as zero extents. */
  zeroBlocks: number;
  /** Blocks left out: the same in both snapshots. */
  unchangedBlocks: number;
  /** Bytes of the stream. */
  streamBytes: number;
}

/**
 * Writes the blocks of `VOLUME@TO` that differ from snapshot `from` of the
 * same volume (every non-sparse block when `from` is undefined) to `target`.
 *
 * @throws {SnapshotNotFoundError} when either snapshot does not exist.
 * @throws {SyntaxError} when `to` is not `VOLUME@SNAPSHOT`.
 * @throws {RangeError} when `from` is newer than `to`.
 */
export async function exportDiff(
  node: TorusNode,
  to: string,
  from: string | undefined,
  target: WritableStreamDefaultWriter<Uint8Array>,
): Promise<DiffSummary> {
  const { volume: name, snapshot: toName } = parseSnapshotName(to);
  const context = await node.volumes();
  const volume = await node.metadata.getVolume(name);
  const toSnapshot = await findSnapshot(node.metadata, volume, toName);
  const fromSnapshot = from === undefined
    ? undefined
    : await findSnapshot(node.metadata, volume, from);
  if (fromSnapshot !== undefined && fromSnapshot.inode.inode > toSnapshot.inode.inode) {
    throw new RangeError(
      `Cannot diff ${name}@${from}..${toName}: snapshot "${from}" is newer than "${toName}"`,
    );
  }
  const blockSizeBytes = context.store.blockSizeBytes;
  const toINode = await loadINode(context, volume, toSnapshot.inode);
  const fromINode = fromSnapshot === undefined
    ? undefined
    : await loadINode(context, volume, fromSnapshot.inode);
  const toRefs = baseRefs(toINode.record, blockSizeBytes);
  const fromRefs = fromINode === undefined ? null : baseRefs(fromINode.record, blockSizeBytes);
  const compare = toRefs !== null && fromRefs !== null;

  const out = new ChecksummedWriter(target);
  const summary: DiffSummary = { dataBlocks: 0, zeroBlocks: 0, unchangedBlocks: 0, streamBytes: 0 };
  const emit = async (bytes: Uint8Array) => {
    summary.streamBytes += bytes.length;
    await out.write(bytes);
  };
  await emit(encoder.encode(DIFF_MAGIC));
  await emit(u64(toINode.record.sizeBytes));
  await emit(nameField(from ?? ""));
  await emit(nameField(toName));

  const file = await openSnapshot(context, name, toName);
  try {
    const sizeBytes = toINode.record.sizeBytes;
    const blocks = Math.ceil(sizeBytes / blockSizeBytes);
    for (let index = 0; index < blocks; index++) {
      const offset = index * blockSizeBytes;
      const length = Math.min(blockSizeBytes, sizeBytes - offset);
      const toRef = refAt(toRefs, index);
      const sparse = toRef !== null && toRef.every((byte) => byte === 0);
      if (compare && sameBytes(toRef!, refAt(fromRefs, index)!)) {
        summary.unchangedBlocks++;
        continue;
      }
      if (sparse) {
        if (fromINode === undefined) {
          summary.unchangedBlocks++; // from nothing, a sparse block needs no record
          continue;
        }
        summary.zeroBlocks++;
        await emit(Uint8Array.of(DiffRecord.zero));
        await emit(u64(offset));
        await emit(u32(length));
        continue;
      }
      summary.dataBlocks++;
      await emit(Uint8Array.of(DiffRecord.data));
      await emit(u64(offset));
      await emit(u32(length));
      await emit(await file.readAt(offset, length));
    }
  } finally {
    await file.close();
  }
  await emit(Uint8Array.of(DiffRecord.end));
  await target.write(u32(out.crc));
  summary.streamBytes += 4;
  return summary;
}

/** Reads exactly `length` bytes from a stream, across its chunks. */
class StreamReader {
  crc = 0;
  #source: ReadableStreamDefaultReader<Uint8Array>;
  #buffered: Uint8Array = new Uint8Array(0);

  constructor(source: ReadableStreamDefaultReader<Uint8Array>) {
    this.#source = source;
  }

  /** The next `length` bytes, counted in the CRC unless `raw`. */
  async read(length: number, raw = false): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      if (this.#buffered.length === 0) {
        const { value, done } = await this.#source.read();
        if (done) throw new SyntaxError("the diff stream ends early: it is truncated");
        this.#buffered = value;
        continue;
      }
      const take = Math.min(length - filled, this.#buffered.length);
      out.set(this.#buffered.subarray(0, take), filled);
      this.#buffered = this.#buffered.subarray(take);
      filled += take;
    }
    if (!raw) this.crc = crc32(out, this.crc);
    return out;
  }

  async u8(): Promise<number> {
    return (await this.read(1))[0]!;
  }
  async u16(): Promise<number> {
    const bytes = await this.read(2);
    return new DataView(bytes.buffer).getUint16(0, true);
  }
  async u32(raw = false): Promise<number> {
    const bytes = await this.read(4, raw);
    return new DataView(bytes.buffer).getUint32(0, true);
  }
  async u64(): Promise<number> {
    const bytes = await this.read(8);
    const value = new DataView(bytes.buffer).getBigUint64(0, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new SyntaxError("a number in the diff is too large");
    }
    return Number(value);
  }
  async name(): Promise<string> {
    const length = await this.u16();
    if (length > NAME_LENGTH_BYTES_MAX) {
      throw new SyntaxError("a snapshot name in the diff is too long");
    }
    return decoder.decode(await this.read(length));
  }
  /** True when nothing follows. */
  async atEnd(): Promise<boolean> {
    while (this.#buffered.length === 0) {
      const { value, done } = await this.#source.read();
      if (done) return true;
      this.#buffered = value;
    }
    return false;
  }
}

/** What {@linkcode applyDiff} did. */
export interface ApplySummary {
  volume: string;
  from: string;
  to: string;
  dataBytes: number;
  zeroBytes: number;
  sizeBytes: number;
}

/**
 * Applies a diff stream from `source` to volume `name`, then saves snapshot
 * TO on it. Records are checked and written as they arrive (memory stays at
 * one record); when anything fails (a damaged or truncated stream, a failed
 * write), the volume is put back: restored to snapshot FROM, or deleted when
 * the stream was from nothing and this call created it.
 *
 * @throws {SyntaxError} on a stream that is not a diff, is truncated or fails its CRC.
 * @throws {TorusError} when the volume is not at the stream's FROM snapshot.
 */
export async function applyDiff(
  node: TorusNode,
  source: ReadableStreamDefaultReader<Uint8Array>,
  name: string,
): Promise<ApplySummary> {
  const reader = new StreamReader(source);
  const magic = await reader.read(DIFF_MAGIC.length);
  if (!sameBytes(magic, encoder.encode(DIFF_MAGIC))) {
    throw new SyntaxError("Cannot apply: the input is not a Torus diff");
  }
  const sizeBytes = await reader.u64();
  const from = await reader.name();
  const to = await reader.name();
  if (sizeBytes <= 0 || to === "") {
    throw new SyntaxError("Cannot apply: the diff's header is damaged");
  }

  const context = await node.volumes();
  const lease = (await node.lease()).lease;
  let volume;
  let created = false;
  try {
    volume = await node.metadata.getVolume(name);
  } catch (error) {
    if (!(error instanceof VolumeNotFoundError) || from !== "") throw error;
    volume = await createBlockVolume(node.metadata, name, sizeBytes);
    created = true;
  }
  if (from === "") {
    if (!created) {
      throw new TorusError(
        `Cannot apply a diff from nothing to volume "${name}": it exists; apply it to a new name`,
      );
    }
  } else {
    const base = await findSnapshot(node.metadata, volume, from);
    const head = await node.metadata.currentINode(volume.id);
    if (!head.equals(base.inode)) {
      throw new TorusError(
        `Cannot apply the diff ${from}..${to} to volume "${name}": it changed since snapshot ` +
          `"${from}" (restore it with torusctl block snapshot restore ${name}@${from})`,
      );
    }
  }
  if (volume.sizeBytes < sizeBytes) volume = await node.metadata.resizeVolume(name, sizeBytes);
  const summary: ApplySummary = { volume: name, from, to, dataBytes: 0, zeroBytes: 0, sizeBytes };
  try {
    const file = await openBlockFile(context, name, { lease });
    try {
      for (;;) {
        const kind = await reader.u8();
        if (kind === DiffRecord.end) break;
        const offset = await reader.u64();
        const length = await reader.u32();
        if (length === 0 || length > DIFF_RECORD_BYTES_MAX || offset + length > sizeBytes) {
          throw new SyntaxError(
            `Cannot apply: a record at ${offset}+${length} is outside the volume`,
          );
        }
        if (kind === DiffRecord.data) {
          await file.writeAt(await reader.read(length), offset);
          summary.dataBytes += length;
        } else if (kind === DiffRecord.zero) {
          await file.zero(offset, length);
          summary.zeroBytes += length;
        } else {
          throw new SyntaxError(`Cannot apply: unknown record kind ${kind}`);
        }
      }
      const expected = reader.crc;
      if ((await reader.u32(true)) !== expected) {
        throw new SyntaxError("Cannot apply: the diff fails its CRC-32 (it is damaged)");
      }
      if (!(await reader.atEnd())) {
        throw new SyntaxError("Cannot apply: bytes follow the diff's end");
      }
      await file.sync();
    } finally {
      await file.close();
    }
    await node.metadata.saveSnapshot(volume.id, to);
  } catch (error) {
    // Put the volume back as it was before this call.
    if (created) await node.metadata.deleteVolume(name).catch(() => {});
    else await restoreSnapshot(node.metadata, name, from, lease).catch(() => {});
    throw error;
  }
  return summary;
}
