/**
 * The in-memory {@linkcode Transport}: peers are names in one process
 * (`mem://node-a`), a call is a method call on the listening node's
 * {@linkcode BlockStore}. For simulations and unit tests, so it lets the test
 * break the network on purpose:
 *
 * - {@linkcode MemoryTransport.partition} / {@linkcode MemoryTransport.heal}:
 *   calls to an address fail with `PeerUnavailableError` (a reply in flight
 *   when the partition starts is lost, although the store may have applied
 *   the request, as over a real network).
 * - {@linkcode MemoryTransport.setLatency}: every call to an address waits
 *   that long on the injected clock before it reaches the store (`Infinity`:
 *   a hung node, whose calls end only by their timeout or by `close()`). A
 *   call that timed out is still delivered when its latency has passed, as a
 *   request already on the wire would be.
 * - {@linkcode MemoryTransport.drop}: the node is gone (killed); calls fail
 *   until something listens at the address again.
 *
 * The client keeps the promises of the `PeerClient` contract as the TCP
 * client does, with the same checks (`client_checks.ts`): arguments are
 * checked before anything is sent (`RangeError`, and the store never sees
 * the call), a read asks for whole sectors and checks each against the
 * sector CRCs returned with it (`BlockCorruptError`, never wrong bytes), and
 * a range write's returned CRCs must match the data sent. Buffers are copied
 * in both directions, so neither side ever shares memory with the other; the
 * remote store's own errors (`BlockNotFoundError`, `BlockCorruptError`,
 * `OutOfSpaceError`, `RangeError`) come back as errors of the same class,
 * anything else as `PeerUnavailableError`, as if carried over the wire.
 *
 * A listener's `close()` stops taking calls at once (the address is free to
 * listen at again) and lets the calls its store is already running finish
 * and reply; `drop()` loses those replies instead.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { BlockRef } from "../core/block_ref.ts";
import { sectorsPerBlock } from "../core/sector.ts";
import {
  BlockCorruptError,
  BlockNotFoundError,
  OutOfSpaceError,
  PeerUnavailableError,
} from "../errors.ts";
import type { BlockRange, BlockRead, BlockStore } from "../storage/block_store.ts";
import {
  checkCallTimeout,
  checkReadRange,
  checkWriteLength,
  checkWriteRange,
  verifyRead,
  verifyWrittenSectors,
} from "./client_checks.ts";
import { checkBlockSize } from "./frame.ts";
import type { PeerCallOptions, PeerClient, PeerListener, Transport } from "./transport.ts";

/** The scheme of memory addresses. */
export const MEMORY_SCHEME = "mem://";
/** First port handed out for a `mem://name:0` listen. */
const MEMORY_PORT_FIRST = 40_000;

/** Options of {@linkcode MemoryTransport}. */
export interface MemoryTransportOptions {
  /** Times latency and call timeouts. */
  clock: Clock;
  /** Latency of every call to an address without its own, in milliseconds (default 0). */
  latencyMs?: number;
  /**
   * The cluster block size, as the TCP transport has: clients check ranges
   * against it before sending, even to a peer that is unreachable, and only
   * stores of it may be served. Default: none; a client then checks against
   * the block size of the store listening at its address, and a call to an
   * address nobody listens at fails with `PeerUnavailableError`.
   */
  blockSizeBytes?: number;
}

/**
 * Where a served store is in its life: `open` takes calls; `closing` (its
 * listener's `close()` was called) takes none but lets the calls in flight
 * finish and reply; `closed` is done; `dropped` was killed, and replies of
 * calls still running are lost.
 */
type ServedState = "open" | "closing" | "closed" | "dropped";

/** A store being served at an address. */
interface Served {
  address: string;
  store: BlockStore;
  /** The store operations running now. */
  inFlight: Set<Promise<unknown>>;
  state: ServedState;
}

/** Throws `RangeError` unless `address` is a memory address. */
function checkAddress(address: string): void {
  if (!address.startsWith(MEMORY_SCHEME) || address.length === MEMORY_SCHEME.length) {
    throw new RangeError(
      `Cannot use peer address "${address}": the memory transport takes ${MEMORY_SCHEME}<name>`,
    );
  }
}

/**
 * A network of in-process peers with injectable failures.
 *
 * @example Usage
 * ```ts
 * import { MemoryTransport } from "./memory_transport.ts";
 * import { ManualClock } from "../clock.ts";
 * import { MemoryBlockStore } from "../storage/memory_block_store.ts";
 * import { BlockRef, BlockType } from "../core/block_ref.ts";
 * const transport = new MemoryTransport({ clock: new ManualClock(0) });
 * const store = new MemoryBlockStore({ blockSizeBytes: 4096, numBlocks: 8 });
 * await transport.listen("mem://node-a", store);
 * const client = transport.dial("mem://node-a");
 * const ref = new BlockRef(1, BlockType.data, 1, 1);
 * await client.writeBlock(ref, new Uint8Array([7]));
 * if ((await store.readBlock(ref)).data[0] !== 7) throw new Error("not written");
 * transport.partition("mem://node-a");
 * await client.readBlock(ref).then(() => { throw new Error("should fail"); }, () => {});
 * ```
 */
export class MemoryTransport implements Transport {
  /** The cluster block size, when one was given. */
  readonly blockSizeBytes: number | undefined;
  readonly #clock: Clock;
  #defaultLatencyMs: number;
  /** The store taking calls at each address. */
  #served = new Map<string, Served>();
  /** Stores whose listener is closing: no longer at their address, still finishing calls. */
  #closing = new Set<Served>();
  #partitioned = new Set<string>();
  #latencyMs = new Map<string, number>();
  #nextPort = MEMORY_PORT_FIRST;

  /**
   * Creates a network with nobody listening.
   *
   * @throws {RangeError} on a block size that is not whole sectors.
   */
  constructor(options: MemoryTransportOptions) {
    if (options.blockSizeBytes !== undefined) checkBlockSize(options.blockSizeBytes);
    this.blockSizeBytes = options.blockSizeBytes;
    this.#clock = options.clock;
    this.#defaultLatencyMs = options.latencyMs ?? 0;
  }

  /**
   * A client for `address`. Nothing is checked until a call: a call to an
   * address nobody listens at fails with `PeerUnavailableError`.
   *
   * @throws {RangeError} when `address` is not `mem://<name>`.
   */
  dial(address: string): PeerClient {
    checkAddress(address);
    return new MemoryPeerClient(address, {
      blockSizeBytes: () => this.#blockSizeAt(address),
      send: (options, signal, operation) => this.#call(address, options, signal, operation),
    });
  }

  /**
   * Serves `store` at `address`; an address ending in `:0` gets a free
   * number instead (see the returned listener's `address`).
   *
   * The listener's `close()` stops taking calls at once, frees the address,
   * and resolves once the calls the store was already running have finished
   * and replied (however long they take; the store is not closed).
   *
   * @throws {RangeError} when `address` is not `mem://<name>`, or the store's
   * block size is not the transport's.
   * @throws {Deno.errors.AddrInUse} when something already listens there.
   */
  async listen(address: string, store: BlockStore): Promise<PeerListener> {
    checkAddress(address);
    if (this.blockSizeBytes !== undefined && store.blockSizeBytes !== this.blockSizeBytes) {
      throw new RangeError(
        `Cannot serve a store of ${store.blockSizeBytes}-byte blocks: the cluster uses ` +
          `${this.blockSizeBytes}`,
      );
    }
    let actual = address;
    if (address.endsWith(":0")) {
      const stem = address.slice(0, -1);
      do actual = `${stem}${this.#nextPort++}`; while (this.#served.has(actual));
    }
    if (this.#served.has(actual)) {
      throw new Deno.errors.AddrInUse(`Cannot listen at ${actual}: the address is in use`);
    }
    const served: Served = { address: actual, store, inFlight: new Set(), state: "open" };
    this.#served.set(actual, served);
    let closed: Promise<void> | null = null;
    return {
      address: actual,
      close: () => closed ??= this.#close(served),
    };
  }

  /** Stops serving: no new calls, those in flight finish and reply. */
  async #close(served: Served): Promise<void> {
    if (this.#served.get(served.address) === served) this.#served.delete(served.address);
    if (served.state === "open") served.state = "closing";
    this.#closing.add(served);
    try {
      // No call starts any more, so the set only shrinks.
      await Promise.allSettled([...served.inFlight]);
    } finally {
      this.#closing.delete(served);
      if (served.state === "closing") served.state = "closed";
    }
  }

  /** Calls to `address` fail with `PeerUnavailableError` until {@linkcode heal}. */
  partition(address: string): void {
    this.#partitioned.add(address);
  }

  /** Ends a {@linkcode partition}. */
  heal(address: string): void {
    this.#partitioned.delete(address);
  }

  /** Whether `address` is partitioned. */
  isPartitioned(address: string): boolean {
    return this.#partitioned.has(address);
  }

  /**
   * Sets the latency of calls to `address`, in milliseconds on the clock;
   * `Infinity` makes the node hang. `undefined` restores the default.
   */
  setLatency(address: string, latencyMs: number | undefined): void {
    if (latencyMs === undefined) this.#latencyMs.delete(address);
    else this.#latencyMs.set(address, latencyMs);
  }

  /**
   * Kills the node at `address`: it stops listening at once, calls in flight
   * (also those a closing listener there was finishing) lose their replies.
   * Its store is left as it is (the test owns it).
   */
  drop(address: string): void {
    const served = this.#served.get(address);
    if (served !== undefined) served.state = "dropped";
    this.#served.delete(address);
    for (const closing of this.#closing) {
      if (closing.address === address) closing.state = "dropped";
    }
  }

  /**
   * The block size a client of `address` checks its arguments against: the
   * cluster's, else that of the store listening there.
   *
   * @throws {PeerUnavailableError} when neither is known: nobody listens.
   */
  #blockSizeAt(address: string): number {
    const blockSizeBytes = this.blockSizeBytes ?? this.#served.get(address)?.store.blockSizeBytes;
    if (blockSizeBytes === undefined) {
      throw new PeerUnavailableError(`Cannot reach ${address}: connection refused`);
    }
    return blockSizeBytes;
  }

  /** Runs `operation` on the store at `address` as one call over the network. */
  async #call<T>(
    address: string,
    options: PeerCallOptions | undefined,
    signal: AbortSignal,
    operation: (store: BlockStore) => Promise<T>,
  ): Promise<T> {
    const deadline = new Deadline(this.#clock, address, options?.timeoutMs, signal);
    const latencyMs = this.#latencyMs.get(address) ?? this.#defaultLatencyMs;
    // A request on the wire travels on its own: a caller that stops waiting
    // (timeout) does not stop it; a closed client's unsent requests are dropped.
    const delivery = (async () => {
      if (latencyMs > 0) await this.#delay(latencyMs);
      if (signal.aborted) {
        throw new PeerUnavailableError(`Cannot reach ${address}: the client was closed`);
      }
      const served = this.#accepting(address);
      const running = operation(served.store);
      served.inFlight.add(running);
      running.then(() => served.inFlight.delete(running), () => served.inFlight.delete(running));
      let result: T;
      try {
        result = await running;
      } catch (error) {
        throw asWireError(address, error);
      }
      // The reply crosses the network too: lost if the node was killed or
      // cut off meanwhile (a listener that is closing still replies).
      this.#replying(address, served);
      return result;
    })();
    delivery.catch(() => {});
    try {
      return await deadline.race(delivery);
    } finally {
      deadline.clear();
    }
  }

  /** The store a request arriving at `address` now reaches. */
  #accepting(address: string): Served {
    this.#checkNetwork(address);
    const served = this.#served.get(address);
    if (served === undefined) {
      throw new PeerUnavailableError(`Cannot reach ${address}: connection refused`);
    }
    return served;
  }

  /** Throws unless the reply of a call `served` ran can get back from `address`. */
  #replying(address: string, served: Served): void {
    this.#checkNetwork(address);
    if (served.state === "dropped") {
      throw new PeerUnavailableError(`Cannot reach ${address}: the node is gone`);
    }
  }

  #checkNetwork(address: string): void {
    if (this.#partitioned.has(address)) {
      throw new PeerUnavailableError(`Cannot reach ${address}: the network is partitioned`);
    }
  }

  #delay(latencyMs: number): Promise<void> {
    return Number.isFinite(latencyMs) ? this.#clock.sleep(latencyMs) : new Promise(() => {});
  }
}

/** A timeout and a cancellation for one call. */
class Deadline {
  #clock: Clock;
  #timer: number | undefined;
  #expired: Promise<never>;
  #onAbort: () => void = () => {};
  #signal: AbortSignal;

  constructor(clock: Clock, address: string, timeoutMs: number | undefined, signal: AbortSignal) {
    this.#clock = clock;
    this.#signal = signal;
    this.#expired = new Promise<never>((_, reject) => {
      if (timeoutMs !== undefined) {
        this.#timer = clock.setTimer(timeoutMs, () => {
          reject(new PeerUnavailableError(`Cannot reach ${address}: no reply in ${timeoutMs} ms`));
        });
      }
      this.#onAbort = () =>
        reject(new PeerUnavailableError(`Cannot reach ${address}: the client was closed`));
      if (signal.aborted) this.#onAbort();
      else signal.addEventListener("abort", this.#onAbort, { once: true });
    });
    this.#expired.catch(() => {});
  }

  race<T>(promise: Promise<T>): Promise<T> {
    return Promise.race([promise, this.#expired]);
  }

  clear(): void {
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#signal.removeEventListener("abort", this.#onAbort);
  }
}

/** The error a remote store's failure arrives as. */
function asWireError(address: string, error: unknown): Error {
  if (error instanceof PeerUnavailableError) return error;
  for (const Kind of [BlockNotFoundError, BlockCorruptError, OutOfSpaceError]) {
    if (error instanceof Kind) return new Kind(error.message);
  }
  if (error instanceof RangeError) return new RangeError(error.message);
  const message = error instanceof Error ? error.message : String(error);
  return new PeerUnavailableError(`Cannot use the store at ${address}: ${message}`, {
    cause: error,
  });
}

function copyRead(read: BlockRead): BlockRead {
  return { data: read.data.slice(), sectorCrcs: read.sectorCrcs.slice() };
}

/** How a client sends one call through its transport. */
type Send = <T>(
  options: PeerCallOptions | undefined,
  signal: AbortSignal,
  operation: (store: BlockStore) => Promise<T>,
) => Promise<T>;

/** What a client uses of the transport it was dialled on. */
interface Link {
  /** The block size to check arguments against; throws `PeerUnavailableError` when unknown. */
  blockSizeBytes(): number;
  /** Sends one call. */
  send: Send;
}

/** Throws `RangeError` on a bad `timeoutMs` (none at all is fine: no timeout). */
function checkOptions(options: PeerCallOptions | undefined): void {
  if (options?.timeoutMs !== undefined) checkCallTimeout(options.timeoutMs);
}

/**
 * A client of one memory address. Checks arguments and verifies replies as
 * the TCP client does (`client_checks.ts`); unlike it, a call without
 * `timeoutMs` has no timeout.
 */
class MemoryPeerClient implements PeerClient {
  /** The address dialled. */
  readonly address: string;
  #link: Link;
  #closing = new AbortController();

  constructor(address: string, link: Link) {
    this.address = address;
    this.#link = link;
  }

  /**
   * Reads a whole block or `range` of it: asks for whole sectors and checks
   * each against the sector CRCs that come with them before any byte is
   * returned.
   *
   * @throws {BlockNotFoundError} when the peer does not store the block.
   * @throws {BlockCorruptError} when the peer's copy, or the reply, is damaged.
   * @throws {PeerUnavailableError} on a timeout, an unreachable peer or a malformed reply.
   * @throws {RangeError} when `range` is outside the block (nothing is sent).
   */
  async readBlock(
    ref: BlockRef,
    range?: BlockRange,
    options?: PeerCallOptions,
  ): Promise<BlockRead> {
    checkOptions(options);
    const blockSizeBytes = this.#link.blockSizeBytes();
    const { wanted, aligned } = checkReadRange(blockSizeBytes, range);
    const read = await this.#call(
      options,
      async (store) => copyRead(await store.readBlock(ref, { ...aligned })),
    );
    const sectors = sectorsPerBlock(blockSizeBytes);
    if (read.data.length !== aligned.lengthBytes || read.sectorCrcs.length !== sectors) {
      throw new PeerUnavailableError(
        `${this.address} sent a bad reply to a read of ${ref}: ${read.data.length} bytes and ` +
          `${read.sectorCrcs.length} CRCs, expected ${aligned.lengthBytes} and ${sectors}`,
      );
    }
    return verifyRead(
      this.address,
      ref,
      blockSizeBytes,
      wanted,
      aligned,
      read.data,
      read.sectorCrcs,
    );
  }

  /**
   * Stores a whole block (zero-padded) on the peer.
   *
   * @throws {OutOfSpaceError} when the peer's store is full.
   * @throws {PeerUnavailableError} on a timeout or an unreachable peer.
   * @throws {RangeError} when `data` is longer than a block (nothing is sent).
   */
  async writeBlock(ref: BlockRef, data: Uint8Array, options?: PeerCallOptions): Promise<void> {
    checkOptions(options);
    checkWriteLength(this.#link.blockSizeBytes(), ref, data.length);
    const sent = data.slice();
    await this.#call(options, (store) => store.writeBlock(ref, sent));
  }

  /**
   * Overwrites a range of a block the peer stores; returns its new sector
   * CRCs, checked against the data sent for every sector the data covers.
   *
   * @throws {BlockNotFoundError} when the peer does not store the block.
   * @throws {BlockCorruptError} when the block does not match `expectDigest`,
   * an edge sector is corrupt, or the returned CRCs do not match the data.
   * @throws {PeerUnavailableError} on a timeout, an unreachable peer or a malformed reply.
   * @throws {RangeError} on a range outside the block or a digest that is not a u32.
   */
  async writeBlockRange(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
    options?: PeerCallOptions,
  ): Promise<Uint32Array> {
    checkOptions(options);
    const blockSizeBytes = this.#link.blockSizeBytes();
    checkWriteRange(blockSizeBytes, offsetBytes, data.length, expectDigest);
    const sent = data.slice();
    const crcs = await this.#call(
      options,
      async (store) => (await store.writeBlockRange(ref, offsetBytes, sent, expectDigest)).slice(),
    );
    const sectors = sectorsPerBlock(blockSizeBytes);
    if (crcs.length !== sectors) {
      throw new PeerUnavailableError(
        `${this.address} sent a bad reply to a range write of ${ref}: ${crcs.length} CRCs, ` +
          `expected ${sectors}`,
      );
    }
    verifyWrittenSectors(this.address, ref, blockSizeBytes, offsetBytes, sent, crcs);
    return crcs;
  }

  /** Deletes a block on the peer; resolves to whether it was stored. */
  async deleteBlock(ref: BlockRef, options?: PeerCallOptions): Promise<boolean> {
    checkOptions(options);
    return await this.#call(options, (store) => store.deleteBlock(ref));
  }

  /** Which of `refs` the peer stores, in order. */
  async hasBlocks(refs: BlockRef[], options?: PeerCallOptions): Promise<boolean[]> {
    checkOptions(options);
    const sent = [...refs];
    return await this.#call(
      options,
      (store) => Promise.all(sent.map((ref) => store.hasBlock(ref))),
    );
  }

  /** Makes every write the peer acknowledged so far durable. */
  async flush(options?: PeerCallOptions): Promise<void> {
    checkOptions(options);
    return await this.#call(options, (store) => store.flush());
  }

  /** Fails pending and later calls with `PeerUnavailableError`. */
  close(): Promise<void> {
    this.#closing.abort();
    return Promise.resolve();
  }

  #call<T>(
    options: PeerCallOptions | undefined,
    operation: (store: BlockStore) => Promise<T>,
  ): Promise<T> {
    if (this.#closing.signal.aborted) {
      return Promise.reject(
        new PeerUnavailableError(`Cannot reach ${this.address}: the client was closed`),
      );
    }
    return this.#link.send(options, this.#closing.signal, operation);
  }
}
