/**
 * Garbage collection of blocks, failing closed.
 *
 * A block is live when the current INode or a snapshot of its volume
 * references it, or when it is newer than every committed INode of its
 * volume and may still be committed (a write session in flight). Everything
 * else is garbage: blocks replaced by later writes, trimmed blocks, the
 * INodes of old versions, the blocks of deleted volumes, and the blocks of
 * sessions that can never commit: those handed out before marking on a
 * volume that, while marking, was unlocked and kept its current INode (a
 * writer that died or was fenced; a live writer always holds the lock).
 *
 * A clone (`cloneVolume`) references blocks of the volume it was cloned
 * from: a data block referenced by any volume's INode is live whatever
 * volume it belongs to, also when that volume was deleted or has overwritten
 * it since.
 *
 * Unlike the original, any doubt keeps the block: if listing volumes fails,
 * nothing is collected; if a volume's INodes cannot be read, none of its
 * blocks are collected, and no data block that only it might reference (as
 * a clone) is either: then only INode blocks and abandoned sessions' blocks
 * go; a volume created after marking began (an id above every id seen) is
 * left alone.
 *
 * @module
 */
import { type BlockRef, BlockType, INodeRef } from "../core/block_ref.ts";
import type { VolumeInfo } from "../metadata/metadata_service.ts";
import { loadINode, type VolumeContext } from "./block_volume.ts";

interface VolumeMarks {
  /** Keys of live data blocks. */
  data: Set<string>;
  /** Live INode numbers (current and snapshots). */
  inodes: Set<number>;
  /** Blocks of INodes above this are in flight and live… */
  highwater: number;
  /**
   * …unless at or below this: INodes handed out while the volume was, at
   * marking time, unlocked with an unchanged current INode belong to
   * sessions that can never commit (their writer died, or was fenced).
   * 0 when that could not be established.
   */
  abandonedUpTo: number;
}

/** The outcome of marking: which blocks may be deleted. */
export class GcMarks {
  #volumes: Map<number, VolumeMarks | "unknown">;
  #maxVolumeId: number;
  /** Keys of data blocks that a volume's INodes reference across volumes (clones). */
  #shared: Set<string>;
  /** Whether a volume could not be marked: its references to other volumes' blocks are unknown. */
  #anyUnknown: boolean;

  constructor(
    volumes: Map<number, VolumeMarks | "unknown">,
    maxVolumeId: number,
    shared: Set<string> = new Set(),
  ) {
    this.#volumes = volumes;
    this.#maxVolumeId = maxVolumeId;
    this.#shared = shared;
    this.#anyUnknown = [...volumes.values()].includes("unknown");
  }

  /** True only when `ref` is certainly garbage. */
  isDead(ref: BlockRef): boolean {
    const marks = this.#volumes.get(ref.volume);
    if (marks === "unknown") return false;
    const data = ref.type === BlockType.data;
    if (data && (this.#shared.has(ref.key()) || this.#anyUnknown)) {
      // Referenced by a clone, or maybe by a volume that could not be marked.
      if (marks === undefined || ref.inode <= marks.highwater) return false;
    }
    if (marks === undefined) return ref.volume <= this.#maxVolumeId; // deleted volume
    if (ref.inode > marks.highwater) return ref.inode <= marks.abandonedUpTo;
    if (!data) return !marks.inodes.has(ref.inode);
    return !marks.data.has(ref.key());
  }
}

/**
 * Marks the live blocks of every volume. Returns null when the volume list
 * cannot be read: then nothing may be collected.
 */
export async function markLiveBlocks(context: VolumeContext): Promise<GcMarks | null> {
  let volumes: VolumeInfo[];
  let maxVolumeId: number;
  try {
    // The highwater first: a volume created after it is read has a larger id.
    maxVolumeId = await context.metadata.volumeIdHighwater();
    volumes = await context.metadata.listVolumes();
  } catch {
    return null;
  }
  const marks = new Map<number, VolumeMarks | "unknown">();
  const shared = new Set<string>();
  for (const volume of volumes) {
    try {
      marks.set(volume.id, await markVolume(context, volume, shared));
    } catch {
      marks.set(volume.id, "unknown");
    }
  }
  return new GcMarks(marks, maxVolumeId, shared);
}

/** Marks one volume; data blocks it references of other volumes go to `shared`. */
async function markVolume(
  context: VolumeContext,
  volume: VolumeInfo,
  shared: Set<string>,
): Promise<VolumeMarks> {
  const heads: INodeRef[] = [await context.metadata.currentINode(volume.id)];
  for (const snapshot of await context.metadata.listSnapshots(volume.id)) {
    heads.push(snapshot.inode);
  }
  const marks: VolumeMarks = { data: new Set(), inodes: new Set(), highwater: 0, abandonedUpTo: 0 };
  for (const head of heads) {
    marks.inodes.add(head.inode);
    marks.highwater = Math.max(marks.highwater, head.inode);
    if (head.inode <= 1) continue;
    const { blockset } = await loadINode(context, volume, new INodeRef(volume.id, head.inode));
    for (const ref of blockset.blockRefs()) {
      (ref.volume === volume.id ? marks.data : shared).add(ref.key());
    }
  }
  // In this order: a writer that locks after the counter is read gets a
  // larger INode; one that locked before shows as in use; one that committed
  // meanwhile changed the current INode. Any of those keeps the old rule.
  const counter = await context.metadata.inodeCounter(volume.id);
  const status = await context.metadata.lockStatus(volume.id);
  const current = await context.metadata.currentINode(volume.id);
  if (status === "free" && current.equals(heads[0]!)) marks.abandonedUpTo = counter;
  return marks;
}

/** What one collection did. */
export interface GcResult {
  /** False when marking failed and nothing was examined. */
  ran: boolean;
  deletedBlocks: number;
  keptBlocks: number;
}

/**
 * Deletes every block of the store that marking proves dead, then flushes.
 * `precomputed` marks (from {@linkcode markLiveBlocks}) may come from another
 * context: a cluster node marks through the distributor and sweeps its local
 * store.
 */
export async function collectGarbage(
  context: VolumeContext,
  precomputed?: GcMarks,
): Promise<GcResult> {
  const marks = precomputed ?? await markLiveBlocks(context);
  if (marks === null) {
    return { ran: false, deletedBlocks: 0, keptBlocks: context.store.usedBlocks() };
  }
  let deletedBlocks = 0;
  let keptBlocks = 0;
  for (const ref of context.store.blockRefs()) {
    if (marks.isDead(ref)) {
      if (await context.store.deleteBlock(ref)) deletedBlocks++;
    } else {
      keptBlocks++;
    }
  }
  if (deletedBlocks > 0) await context.store.flush();
  return { ran: true, deletedBlocks, keptBlocks };
}
