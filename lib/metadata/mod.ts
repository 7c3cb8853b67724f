/**
 * The metadata service: everything Torus coordinates outside the blocks
 * themselves. It holds the cluster's global metadata (block size, default
 * blockset spec), the placement ring, the volume registry with each volume's
 * INode counter and current INode, volume write locks, snapshots, leases and
 * peer registrations.
 *
 * Implementations:
 *
 * - {@linkcode MemoryMetadata}: in memory, for tests and simulations; several
 *   clients may share one {@linkcode MemoryMetadataStore}.
 * - {@linkcode SqliteMetadata}: one SQLite file, shared by every process of a
 *   single machine.
 * - {@linkcode EtcdMetadata}: etcd v3, shared by every process of a cluster,
 *   with the original's key layout; leases expire in etcd's time, and a
 *   lock's fence is its key's create revision. {@linkcode wipeEtcd} deletes a
 *   cluster's keys.
 *
 * Invariants every implementation keeps (checked by the shared conformance
 * suite in `_metadata_conformance.ts`):
 *
 * - Every method is atomic: another client sees all of an operation or none.
 * - Volume ids start at 1, grow, and are never reused, so blocks of a deleted
 *   volume can never be read as a new volume's. Deleting a volume touches
 *   only that volume (deleting id 2 leaves ids 20..29 alone) and is refused
 *   while its lock is held.
 * - `nextINode` never hands out the same number twice for a volume.
 * - Fencing: a lock is held only while its lease is alive. `commitINode`
 *   succeeds only while the token's owner, lease and fence are still the
 *   volume's lock and the lease has not expired, so a writer whose lease
 *   lapsed can never commit, whether or not someone else took the lock since.
 *   Fences grow per volume, and lease ids are never reused.
 * - The ring only moves forward one version at a time (compare-and-swap).
 * - Names of volumes and snapshots are non-empty, at most
 *   `NAME_LENGTH_BYTES_MAX` bytes of UTF-8, with no `/`, `@` or control
 *   characters.
 *
 * @module
 */
export * from "./metadata_service.ts";
export * from "./memory_metadata.ts";
export * from "./sqlite_metadata.ts";
export * from "./etcd_endpoints.ts";
export * from "./etcd_metadata.ts";
