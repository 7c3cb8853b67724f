/**
 * A volume environment on memory implementations, for tests.
 *
 * @module
 */
import { ManualClock } from "../clock.ts";
import { INodeStore } from "../inode/inode_store.ts";
import { MemoryMetadata, MemoryMetadataStore } from "../metadata/memory_metadata.ts";
import type { Lease } from "../metadata/metadata_service.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import type { VolumeContext } from "./block_volume.ts";

/** A memory store, metadata and a lease; `client()` adds another process. */
export async function testEnv(
  options: {
    blockSizeBytes?: number;
    blockSpec?: string;
    numBlocks?: number;
    /** The store to use instead of a new one (a test's subclass). */
    store?: MemoryBlockStore;
  } = {},
): Promise<
  VolumeContext & {
    clock: ManualClock;
    lease: Lease;
    store: MemoryBlockStore;
    client(): Promise<VolumeContext & { lease: Lease }>;
  }
> {
  const clock = new ManualClock(1_700_000_000_000);
  const shared = new MemoryMetadataStore();
  const blockSizeBytes = options.blockSizeBytes ?? 256;
  const store = options.store ??
    new MemoryBlockStore({ blockSizeBytes, numBlocks: options.numBlocks ?? 100_000 });
  const metadata = new MemoryMetadata({ clock, store: shared });
  await metadata.initialize(
    { blockSizeBytes, defaultBlockSpec: options.blockSpec ?? "crc,base" },
    { version: 1, bytes: new Uint8Array() },
  );
  const inodes = new INodeStore(store);
  return {
    metadata,
    store,
    inodes,
    clock,
    lease: await metadata.grantLease(30_000),
    async client() {
      const other = new MemoryMetadata({ clock, store: shared });
      return { metadata: other, store, inodes, lease: await other.grantLease(30_000) };
    },
  };
}
