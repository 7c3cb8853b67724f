/**
 * Block volumes: create, open, list, delete, and snapshots.
 *
 * A block volume is a named, fixed-size file. Its current version is the
 * INode its metadata points to; INode 1 is virtual (a fresh volume stores
 * nothing: every block is sparse). Writing takes the volume's lock, bound to
 * the caller's lease, so there is one writer per volume; readers (read-only
 * opens, snapshots) take no lock.
 *
 * @module
 */
import { INodeRef } from "../core/block_ref.ts";
import { Blockset } from "../blockset/blockset.ts";
import { parseBlockSpec } from "../blockset/spec.ts";
import { File, type ReclaimReason } from "../file/file.ts";
import type { INodeRecord, INodeStore } from "../inode/inode_store.ts";
import type {
  Lease,
  LockToken,
  MetadataService,
  SnapshotInfo,
  VolumeInfo,
} from "../metadata/metadata_service.ts";
import type { BlockStore } from "../storage/block_store.ts";
import { SnapshotNotFoundError } from "../errors.ts";

/** The services a volume operation needs. */
export interface VolumeContext {
  metadata: MetadataService;
  store: BlockStore;
  inodes: INodeStore;
  /**
   * Garbage collection for writers that find the store full (see
   * `FileOptions.reclaimSpace`); without it such writes fail with `OutOfSpaceError`.
   */
  reclaimSpace?: (reason: ReclaimReason) => Promise<void>;
}

/** How to open a volume. */
export interface OpenVolumeOptions {
  /** The lease the write lock is bound to; required unless `readOnly`. */
  lease?: Lease;
  /** Open without the lock; writes throw `ReadOnlyError`. */
  readOnly?: boolean;
}

/**
 * Creates a block volume of `sizeBytes`.
 *
 * @throws {AlreadyExistsError} when the name is taken.
 * @throws {RangeError} on a bad name or size.
 */
export async function createBlockVolume(
  metadata: MetadataService,
  name: string,
  sizeBytes: number,
): Promise<VolumeInfo> {
  return await metadata.createVolume(name, sizeBytes);
}

/**
 * Loads the INode `ref` of `volume`; INode 1 is synthesized (all sparse).
 *
 * @throws {BlockNotFoundError|BlockCorruptError|SyntaxError} when it cannot be read.
 */
export async function loadINode(
  context: VolumeContext,
  volume: VolumeInfo,
  ref: INodeRef,
): Promise<{ record: INodeRecord; blockset: Blockset }> {
  if (ref.inode <= 1) {
    const { defaultBlockSpec } = await context.metadata.globalMetadata();
    const blockset = Blockset.fromSpec(parseBlockSpec(defaultBlockSpec), context.store);
    blockset.truncate(Math.ceil(volume.sizeBytes / context.store.blockSizeBytes));
    return {
      record: { ref, replaces: 0, sizeBytes: volume.sizeBytes, layers: blockset.marshal() },
      blockset,
    };
  }
  const record = await context.inodes.getINode(ref);
  return { record, blockset: Blockset.unmarshal(record.layers, context.store) };
}

/**
 * Opens a volume for reading and writing (taking its lock) or read-only.
 *
 * @throws {VolumeNotFoundError} when it does not exist.
 * @throws {VolumeInUseError} when another writer holds its lock.
 */
export async function openBlockFile(
  context: VolumeContext,
  name: string,
  options: OpenVolumeOptions = {},
): Promise<File> {
  const volume = await context.metadata.getVolume(name);
  if (options.readOnly) {
    const head = await context.metadata.currentINode(volume.id);
    return await fileAt(context, volume, head, null, true);
  }
  if (!options.lease) {
    throw new TypeError(`Cannot open volume "${name}" for writing without a lease`);
  }
  const lock = await context.metadata.lockVolume(volume.id, options.lease);
  try {
    const head = await context.metadata.currentINode(volume.id);
    return await fileAt(context, volume, head, lock, true);
  } catch (error) {
    await context.metadata.unlockVolume(lock);
    throw error;
  }
}

/**
 * A {@linkcode File} of the INode `ref`. The volume's head (`isHead`) takes
 * the volume's size when it was grown past its INode's: the blocks past the
 * INode's end are sparse until written. A snapshot keeps its INode's size.
 */
async function fileAt(
  context: VolumeContext,
  volume: VolumeInfo,
  ref: INodeRef,
  lock: LockToken | null,
  isHead: boolean,
): Promise<File> {
  const { blockset, record: stored } = await loadINode(context, volume, ref);
  let record = stored;
  if (isHead && volume.sizeBytes > record.sizeBytes) {
    blockset.truncate(Math.ceil(volume.sizeBytes / context.store.blockSizeBytes));
    record = { ...record, sizeBytes: volume.sizeBytes };
  }
  return new File({
    volume,
    head: record,
    blockset,
    inodes: context.inodes,
    store: context.store,
    metadata: context.metadata,
    lock,
    onClose: lock ? () => context.metadata.unlockVolume(lock) : undefined,
    reclaimSpace: context.reclaimSpace,
  });
}

/** Finds a snapshot by name. @throws {SnapshotNotFoundError} */
export async function findSnapshot(
  metadata: MetadataService,
  volume: VolumeInfo,
  snapshot: string,
): Promise<SnapshotInfo> {
  const found = (await metadata.listSnapshots(volume.id)).find((s) => s.name === snapshot);
  if (!found) {
    throw new SnapshotNotFoundError(
      `Cannot find snapshot "${volume.name}@${snapshot}": run torusctl block snapshot list ${volume.name}`,
    );
  }
  return found;
}

/** Opens a snapshot read-only. @throws {SnapshotNotFoundError} */
export async function openSnapshot(
  context: VolumeContext,
  name: string,
  snapshot: string,
): Promise<File> {
  const volume = await context.metadata.getVolume(name);
  const found = await findSnapshot(context.metadata, volume, snapshot);
  return await fileAt(context, volume, found.inode, null, false);
}

/**
 * Makes a snapshot the volume's current version. Takes the volume's lock, so
 * it is refused while the volume is in use.
 *
 * @throws {VolumeInUseError} while another process has the volume open.
 * @throws {SnapshotNotFoundError}
 */
export async function restoreSnapshot(
  metadata: MetadataService,
  name: string,
  snapshot: string,
  lease: Lease,
): Promise<void> {
  const volume = await metadata.getVolume(name);
  const found = await findSnapshot(metadata, volume, snapshot);
  const lock = await metadata.lockVolume(volume.id, lease);
  try {
    await metadata.commitINode(lock, new INodeRef(volume.id, found.inode.inode));
  } finally {
    await metadata.unlockVolume(lock);
  }
}

/**
 * Creates volume `name` as a copy-on-write clone of snapshot `snapshot` of
 * volume `source`: its first INode references the snapshot's blocks, so
 * nothing is copied until either volume writes (the first write to a block
 * copies it, as after any sync). Garbage collection keeps a block while any
 * volume references it, also after the source is deleted
 * (`lib/block/gc.ts`). A failure deletes the new volume again.
 *
 * @throws {SnapshotNotFoundError} when the snapshot does not exist.
 * @throws {AlreadyExistsError} when `name` is taken.
 */
export async function cloneVolume(
  context: VolumeContext,
  source: string,
  snapshot: string,
  name: string,
  lease: Lease,
): Promise<VolumeInfo> {
  const origin = await context.metadata.getVolume(source);
  const found = await findSnapshot(context.metadata, origin, snapshot);
  const { record } = await loadINode(context, origin, found.inode);
  const clone = await context.metadata.createVolume(name, origin.sizeBytes);
  try {
    if (found.inode.inode <= 1) return clone; // never written: an empty volume is the same
    const lock = await context.metadata.lockVolume(clone.id, lease);
    try {
      const ref = new INodeRef(clone.id, await context.metadata.nextINode(clone.id));
      await context.inodes.writeINode({
        ref,
        replaces: 0,
        sizeBytes: record.sizeBytes,
        layers: record.layers,
      });
      await context.store.flush();
      await context.metadata.commitINode(lock, ref);
    } finally {
      await context.metadata.unlockVolume(lock);
    }
    return clone;
  } catch (error) {
    await context.metadata.deleteVolume(name).catch(() => {});
    throw error;
  }
}
