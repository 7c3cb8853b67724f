/**
 * The volume and snapshot operations behind `torusctl`, on a
 * {@linkcode TorusNode}. They return data; printing is the command's job.
 *
 * @module
 */
import {
  cloneVolume,
  createBlockVolume,
  findSnapshot,
  loadINode,
  restoreSnapshot,
  type VolumeContext,
} from "../block/block_volume.ts";
import type { INodeRef } from "../core/block_ref.ts";
import { SystemClock } from "../clock.ts";
import { stderrLogger } from "../log.ts";
import { Scrubber, type ScrubStatus } from "../storage/scrubber.ts";
import { checkNewBlockSize } from "../core/sector.ts";
import type { LockStatus, SnapshotInfo, VolumeInfo } from "../metadata/metadata_service.ts";
import type { TorusNode } from "../node/torus_node.ts";
import { parseSize } from "../size.ts";
import { formatBlockSpec, parseBlockSpec } from "../blockset/spec.ts";

/** A row of `volume list`. */
export interface VolumeRow extends VolumeInfo {
  status: LockStatus;
}

/** Every volume with its lock status. */
export async function listVolumes(node: TorusNode): Promise<VolumeRow[]> {
  await node.globalMetadata();
  const volumes = await node.metadata.listVolumes();
  return await Promise.all(volumes.map(async (volume) => ({
    ...volume,
    status: await node.metadata.lockStatus(volume.id).catch(() => "unknown" as const),
  })));
}

/** A row of `volume du`: what a volume's blocks take, in bytes of whole blocks. */
export interface UsageRow {
  name: string;
  /** The volume's size. */
  provisionedBytes: number;
  /** Blocks the current version references (written and not trimmed). */
  usedBytes: number;
  /** Blocks only its snapshots reference: freed when they are deleted. */
  snapshotOnlyBytes: number;
  /** Blocks it references that belong to another volume (a clone's origin). */
  sharedBytes: number;
  snapshots: number;
}

/**
 * How much of the store each volume takes (`torusctl volume du`), read off
 * its INodes: the blocks its current version references, those only its
 * snapshots keep, and those it shares as a clone. Needs the block store
 * (INodes are blocks). `name` restricts it to one volume.
 */
export async function volumeUsage(node: TorusNode, name?: string): Promise<UsageRow[]> {
  const context = await node.volumes();
  const volumes = name === undefined
    ? await node.metadata.listVolumes()
    : [await node.metadata.getVolume(name)];
  const blockSizeBytes = context.store.blockSizeBytes;
  const rows: UsageRow[] = [];
  for (const volume of volumes) {
    const keysOf = async (inode: INodeRef) =>
      new Set(
        (await loadINode(context, volume, inode)).blockset.blockRefs().map((ref) => ref.key()),
      );
    const current = await keysOf(await node.metadata.currentINode(volume.id));
    const snapshots = await node.metadata.listSnapshots(volume.id);
    const snapshotOnly = new Set<string>();
    for (const snapshot of snapshots) {
      for (const key of await keysOf(snapshot.inode)) {
        if (!current.has(key)) snapshotOnly.add(key);
      }
    }
    const own = `${volume.id}.`;
    const shared = [...current, ...snapshotOnly].filter((key) => !key.startsWith(own)).length;
    rows.push({
      name: volume.name,
      provisionedBytes: volume.sizeBytes,
      usedBytes: current.size * blockSizeBytes,
      snapshotOnlyBytes: snapshotOnly.size * blockSizeBytes,
      sharedBytes: shared * blockSizeBytes,
      snapshots: snapshots.length,
    });
  }
  return rows;
}

/**
 * Creates a block volume; `sizeText` is a size with units (`10GiB`).
 *
 * @throws {SyntaxError} on a malformed size.
 */
export async function createVolume(
  node: TorusNode,
  name: string,
  sizeText: string,
): Promise<VolumeInfo> {
  const sizeBytes = parseSize(sizeText);
  if (sizeBytes <= 0) throw new RangeError(`Cannot create volume "${name}": size must be positive`);
  await node.globalMetadata();
  return await createBlockVolume(node.metadata, name, sizeBytes);
}

/**
 * Grows a volume to `sizeText` (`20GiB`, or `+10GiB` to add); metadata only,
 * so it works while torusd serves the volume. Returns the volume before and
 * after.
 *
 * @throws {SyntaxError} on a malformed size.
 * @throws {RangeError} on a size smaller than the volume's (shrinking is refused) or too large.
 */
export async function resizeVolume(
  node: TorusNode,
  name: string,
  sizeText: string,
): Promise<{ before: VolumeInfo; after: VolumeInfo }> {
  const relative = sizeText.startsWith("+");
  const sizeBytes = parseSize(relative ? sizeText.slice(1) : sizeText);
  await node.globalMetadata();
  const before = await node.metadata.getVolume(name);
  const after = await node.metadata.resizeVolume(
    name,
    relative ? before.sizeBytes + sizeBytes : sizeBytes,
  );
  return { before, after };
}

/**
 * One whole scrub pass over the context's block store (`torusctl scrub`):
 * every stored block read and its checksums verified, corrupt ones named.
 */
export async function scrubStore(context: VolumeContext): Promise<ScrubStatus> {
  const scrubber = new Scrubber({
    store: context.store,
    clock: new SystemClock(),
    logger: stderrLogger("warn", "torusctl"),
  });
  return await scrubber.pass();
}

/** Deletes a volume; its blocks are freed by the next garbage collection. */
export async function deleteVolume(node: TorusNode, name: string): Promise<void> {
  await node.globalMetadata();
  await node.metadata.deleteVolume(name);
}

/** What `torusctl init` sets. */
export interface InitOptions {
  blockSizeText: string;
  blockSpec: string;
  /** A cluster starts with an empty ring instead of ketama (`--no-ring`). */
  noRing?: boolean;
}

/** `torusctl init`'s flags, checked. */
export interface InitPlan {
  blockSizeBytes: number;
  defaultBlockSpec: string;
  noRing: boolean;
}

/**
 * Checks `init`'s flags before anything is opened or created, so that a bad
 * size or spec leaves no half-made data directory behind.
 *
 * @throws {RangeError} on a block size that is not a power of two in bounds.
 * @throws {SyntaxError} on an unreadable size or block spec.
 */
export function planInitialize(options: InitOptions): InitPlan {
  const blockSizeBytes = parseSize(options.blockSizeText);
  checkNewBlockSize(blockSizeBytes);
  const defaultBlockSpec = formatBlockSpec(parseBlockSpec(options.blockSpec));
  return { blockSizeBytes, defaultBlockSpec, noRing: options.noRing === true };
}

/** Formats the data directory's metadata. */
export async function initialize(node: TorusNode, plan: InitPlan): Promise<void> {
  const { blockSizeBytes, defaultBlockSpec, noRing } = plan;
  await node.initialize({ blockSizeBytes, defaultBlockSpec }, { noRing });
}

/**
 * Splits `VOLUME@SNAPSHOT`.
 *
 * @throws {SyntaxError} when either part is missing.
 */
export function parseSnapshotName(text: string): { volume: string; snapshot: string } {
  const at = text.lastIndexOf("@");
  if (at <= 0 || at === text.length - 1) {
    throw new SyntaxError(`Cannot parse "${text}": expected VOLUME@SNAPSHOT`);
  }
  return { volume: text.slice(0, at), snapshot: text.slice(at + 1) };
}

/** Saves the volume's last synced state as a snapshot. */
export async function createSnapshot(node: TorusNode, text: string): Promise<SnapshotInfo> {
  const { volume, snapshot } = parseSnapshotName(text);
  const info = await node.metadata.getVolume(volume);
  return await node.metadata.saveSnapshot(info.id, snapshot);
}

/** Snapshots of a volume. */
export async function listSnapshots(node: TorusNode, volume: string): Promise<SnapshotInfo[]> {
  const info = await node.metadata.getVolume(volume);
  return await node.metadata.listSnapshots(info.id);
}

/** Deletes a snapshot; blocks only it pinned are freed by the next GC. */
export async function deleteSnapshot(node: TorusNode, text: string): Promise<void> {
  const { volume, snapshot } = parseSnapshotName(text);
  const info = await node.metadata.getVolume(volume);
  await findSnapshot(node.metadata, info, snapshot);
  await node.metadata.deleteSnapshot(info.id, snapshot);
}

/**
 * Creates volume `name` as a copy-on-write clone of `VOLUME@SNAPSHOT`
 * (`torusctl block clone`); it needs the block store (torusd stopped on one
 * machine; any client in a cluster).
 */
export async function cloneSnapshot(
  node: TorusNode,
  text: string,
  name: string,
): Promise<VolumeInfo> {
  const { volume, snapshot } = parseSnapshotName(text);
  const context = await node.volumes();
  return await cloneVolume(context, volume, snapshot, name, (await node.lease()).lease);
}

/** Makes a snapshot current; refused while the volume is in use. */
export async function restoreVolumeSnapshot(node: TorusNode, text: string): Promise<void> {
  const { volume, snapshot } = parseSnapshotName(text);
  const keeper = await node.lease();
  await restoreSnapshot(node.metadata, volume, snapshot, keeper.lease);
}
