/**
 * The TorusNode contract: what the commands need from "a Torus", whether it
 * is a data directory with the embedded metadata ({@linkcode LocalNode}) or a
 * member or client of a cluster coordinated by etcd (`ClusterNode`).
 *
 * @module
 */
import type { VolumeContext } from "../block/block_volume.ts";
import type { Clock } from "../clock.ts";
import type { GlobalMetadata, MetadataService } from "../metadata/metadata_service.ts";
import type { SizeSpec } from "../size.ts";
import type { LeaseKeeper } from "./lease_keeper.ts";

/** Options of {@linkcode TorusNode.initialize}. */
export interface InitializeOptions {
  /** A cluster starts with an empty ring instead of ketama; a data directory ignores it. */
  noRing?: boolean;
}

/** An open Torus: metadata, and the blocks behind its volumes. */
export interface TorusNode {
  /** The metadata service. */
  readonly metadata: MetadataService;
  /** Where this node's state lives, for messages: a data directory, or etcd endpoints. */
  readonly location: string;
  /** The node's time source (names of temporary snapshots, leases). */
  readonly clock: Clock;
  /** The global metadata. @throws {NotInitializedError} with what to run. */
  globalMetadata(): Promise<GlobalMetadata>;
  /**
   * Formats the metadata (`torusctl init`).
   * @throws {AlreadyExistsError} when it is already initialized.
   */
  initialize(metadata: GlobalMetadata, options?: InitializeOptions): Promise<void>;
  /**
   * Opens the block store (once) and returns what volume operations need.
   * `size` applies when a local store is created or grown.
   */
  volumes(size?: SizeSpec): Promise<VolumeContext>;
  /** This process's lease (granted on first use, renewed until close). */
  lease(): Promise<LeaseKeeper>;
  /** Releases everything: stores flushed, lease revoked, connections closed. */
  close(): Promise<void>;
}
