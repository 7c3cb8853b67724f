/**
 * The operating errors of Torus: conditions a caller is expected to catch and
 * react to. Bad arguments throw `TypeError` or `RangeError`; bad bytes throw
 * `SyntaxError`; bugs throw {@linkcode AssertionError} from `assert.ts`.
 *
 * Every class sets `name` and forwards `cause`, so `instanceof` and the name
 * both survive logging and the process boundary.
 *
 * @module
 */

/** Base class of every Torus operating error. */
export class TorusError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A block is not in the store (or a blockset index is past its end). */
export class BlockNotFoundError extends TorusError {}

/**
 * A block exists but cannot be served as valid data: its checksum does not
 * match, or it was torn by a crash. Never wrong bytes: this error instead.
 */
export class BlockCorruptError extends TorusError {}

/** The block store has no free slot left. Nothing was written. */
export class OutOfSpaceError extends TorusError {}

/** The store, file or service was closed. */
export class ClosedError extends TorusError {}

/** The metadata service has no global metadata: run `torusctl init`. */
export class NotInitializedError extends TorusError {}

/** Something that must be new already exists (volume, snapshot, cluster). */
export class AlreadyExistsError extends TorusError {}

/** A named volume does not exist. */
export class VolumeNotFoundError extends TorusError {}

/** A named snapshot does not exist. */
export class SnapshotNotFoundError extends TorusError {}

/** The volume's write lock is held by someone else. */
export class VolumeInUseError extends TorusError {}

/**
 * A commit was refused because the caller no longer holds the lock it
 * committed under (its lease lapsed, or the lock was taken over).
 */
export class FencedError extends TorusError {}

/**
 * The metadata service (etcd) could not be reached, or did not answer in
 * time. The operation may or may not have taken effect; it may be retried
 * once the service is back.
 */
export class MetadataUnavailableError extends TorusError {}

/** A compare-and-swap lost a race; the operation may be retried. */
export class ConflictError extends TorusError {}

/** A write or open of a read-only file or export. */
export class ReadOnlyError extends TorusError {}

/** No peer can hold or serve a block: the ring is empty, or every candidate failed. */
export class NoPeersError extends TorusError {}

/** A peer did not answer in time, refused the connection, or broke the protocol. */
export class PeerUnavailableError extends TorusError {}

/** A named peer is not a member of the ring (or not alive). */
export class PeerNotFoundError extends TorusError {}
