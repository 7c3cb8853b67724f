/**
 * The networked block store of a cluster.
 *
 * - `distributor.ts`: {@linkcode Distributor}, a {@linkcode BlockStore} that
 *   writes each block to the peers the ring names for it and reads a valid
 *   copy back, with a read cache (`read_cache.ts`).
 * - `rebalancer.ts`: {@linkcode Rebalancer}, which moves the copies a node
 *   holds to their owners on the current ring, and keeps a copy when in doubt.
 *
 * @module
 */
export {
  DELETE_TIMEOUT_MS,
  Distributor,
  type DistributorOptions,
  type DistributorStats,
  type DistributorTimeouts,
  FLUSH_ROUNDS_MAX,
  FLUSH_TIMEOUT_MS,
  PLACEMENTS_MAX,
  READ_BACKOFF_MS,
  READ_LEVELS,
  READ_ROUNDS_MAX,
  READ_TIMEOUT_MAX_MS,
  READ_TIMEOUT_MS,
  type ReadLevel,
  REPAIRS_IN_FLIGHT_MAX,
  UNFLUSHED_BLOCKS_MAX,
  WRITE_LEVELS,
  WRITE_TIMEOUT_MS,
  type WriteLevel,
} from "./distributor.ts";
export {
  HAS_BLOCKS_BATCH_MAX,
  REBALANCE_BLOCKS_PER_TICK,
  REBALANCE_TIMEOUT_MS,
  Rebalancer,
  type RebalancerOptions,
  type RebalanceStatus,
  type TickReport,
} from "./rebalancer.ts";
