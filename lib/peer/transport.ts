/**
 * The Transport contract: how a node reaches the block stores of its peers.
 * A {@linkcode PeerClient} mirrors the {@linkcode BlockStore} operations on a
 * remote node; a listener serves a local `BlockStore` to remote clients.
 * Implementations: `tcp` (the binary peer protocol, `tdp://host:port`) and
 * `memory` (simulation and unit tests, with injectable failures). One
 * conformance suite checks both.
 *
 * Errors a client call may throw: `BlockNotFoundError`, `BlockCorruptError`,
 * `OutOfSpaceError` (the remote store's own errors, carried over the wire),
 * `PeerUnavailableError` (timeout, refused, connection lost, malformed reply),
 * `RangeError` (bad arguments, refused before sending).
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";
import type { BlockRange, BlockRead, BlockStore } from "../storage/block_store.ts";

/** Per-call options. */
export interface PeerCallOptions {
  /** Give up after this long, in milliseconds (then `PeerUnavailableError`). */
  timeoutMs?: number;
}

/** A client of one remote node's block store. */
export interface PeerClient {
  /** The address dialled, for example `tdp://10.0.0.5:40000`. */
  readonly address: string;
  readBlock(ref: BlockRef, range?: BlockRange, options?: PeerCallOptions): Promise<BlockRead>;
  writeBlock(ref: BlockRef, data: Uint8Array, options?: PeerCallOptions): Promise<void>;
  writeBlockRange(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
    options?: PeerCallOptions,
  ): Promise<Uint32Array>;
  deleteBlock(ref: BlockRef, options?: PeerCallOptions): Promise<boolean>;
  /** Which of `refs` the peer stores (the rebalancer's check), in order. */
  hasBlocks(refs: BlockRef[], options?: PeerCallOptions): Promise<boolean[]>;
  /** Makes every write the peer acknowledged so far durable. */
  flush(options?: PeerCallOptions): Promise<void>;
  /** Closes the connection(s); pending calls fail with `PeerUnavailableError`. */
  close(): Promise<void>;
}

/** A running peer-protocol listener. */
export interface PeerListener {
  /** The address peers dial, with the actual port (`tdp://127.0.0.1:40123`). */
  readonly address: string;
  /** Its current load, when it can tell (the TCP server can; `/metrics` reports it). */
  stats?(): PeerListenerStats;
  /** Stops accepting, closes connections, waits for in-flight requests. */
  close(): Promise<void>;
}

/** The load of a {@linkcode PeerListener}. */
export interface PeerListenerStats {
  /** Open connections, in any phase. */
  connections: number;
  /** Requests in flight over all connections. */
  requestsInFlight: number;
  /** Bytes of payloads and replies held over all connections. */
  bufferedBytes: number;
}

/** Dials peers and serves the local store. */
export interface Transport {
  /** A client for `address`; connects lazily, reconnects after failures. */
  dial(address: string): PeerClient;
  /** Serves `store` at `address` (port 0 picks a free port). */
  listen(address: string, store: BlockStore): Promise<PeerListener>;
}
