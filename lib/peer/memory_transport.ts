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
 * Buffers are copied in both directions, so neither side ever shares memory
 * with the other; the remote store's own errors (`BlockNotFoundError`,
 * `BlockCorruptError`, `OutOfSpaceError`, `RangeError`) come back as errors
 * of the same class, anything else as `PeerUnavailableError`, as if carried
 * over the wire.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { BlockRef } from "../core/block_ref.ts";
import {
  BlockCorruptError,
  BlockNotFoundError,
  OutOfSpaceError,
  PeerUnavailableError,
} from "../errors.ts";
import type { BlockRange, BlockRead, BlockStore } from "../storage/block_store.ts";
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
}

interface Served {
  address: string;
  store: BlockStore;
  inFlight: Set<Promise<unknown>>;
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
  readonly #clock: Clock;
  #defaultLatencyMs: number;
  #served = new Map<string, Served>();
  #partitioned = new Set<string>();
  #latencyMs = new Map<string, number>();
  #nextPort = MEMORY_PORT_FIRST;

  constructor(options: MemoryTransportOptions) {
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
    return new MemoryPeerClient(
      address,
      (options, signal, operation) => this.#call(address, options, signal, operation),
    );
  }

  /**
   * Serves `store` at `address`; an address ending in `:0` gets a free
   * number instead (see the returned listener's `address`).
   *
   * @throws {RangeError} when `address` is not `mem://<name>`.
   * @throws {Deno.errors.AddrInUse} when something already listens there.
   */
  async listen(address: string, store: BlockStore): Promise<PeerListener> {
    checkAddress(address);
    let actual = address;
    if (address.endsWith(":0")) {
      const stem = address.slice(0, -1);
      do actual = `${stem}${this.#nextPort++}`; while (this.#served.has(actual));
    }
    if (this.#served.has(actual)) {
      throw new Deno.errors.AddrInUse(`Cannot listen at ${actual}: the address is in use`);
    }
    const served: Served = { address: actual, store, inFlight: new Set() };
    this.#served.set(actual, served);
    return {
      address: actual,
      close: async () => {
        if (this.#served.get(actual) === served) this.#served.delete(actual);
        await Promise.allSettled([...served.inFlight]);
      },
    };
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
   * lose their replies. Its store is left as it is (the test owns it).
   */
  drop(address: string): void {
    this.#served.delete(address);
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
      const served = this.#reach(address);
      const running = operation(served.store);
      served.inFlight.add(running);
      running.then(() => served.inFlight.delete(running), () => served.inFlight.delete(running));
      let result: T;
      try {
        result = await running;
      } catch (error) {
        throw asWireError(address, error);
      }
      // The reply crosses the network too: lost if the node went away meanwhile.
      this.#reach(address, served);
      return result;
    })();
    delivery.catch(() => {});
    try {
      return await deadline.race(delivery);
    } finally {
      deadline.clear();
    }
  }

  #reach(address: string, expected?: Served): Served {
    const served = this.#served.get(address);
    if (this.#partitioned.has(address)) {
      throw new PeerUnavailableError(`Cannot reach ${address}: the network is partitioned`);
    }
    if (served === undefined || (expected !== undefined && served !== expected)) {
      throw new PeerUnavailableError(`Cannot reach ${address}: connection refused`);
    }
    return served;
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

function copyRange(range: BlockRange | undefined): BlockRange | undefined {
  return range === undefined ? undefined : { ...range };
}

/** How a client sends one call through its transport. */
type Send = <T>(
  options: PeerCallOptions | undefined,
  signal: AbortSignal,
  operation: (store: BlockStore) => Promise<T>,
) => Promise<T>;

/** Throws `RangeError` unless `value` is a byte count or offset. */
function checkBytes(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Cannot send ${what} ${value}: expected a non-negative integer`);
  }
}

/** A client of one memory address. */
class MemoryPeerClient implements PeerClient {
  /** The address dialled. */
  readonly address: string;
  #send: Send;
  #closing = new AbortController();

  constructor(address: string, send: Send) {
    this.address = address;
    this.#send = send;
  }

  async readBlock(
    ref: BlockRef,
    range?: BlockRange,
    options?: PeerCallOptions,
  ): Promise<BlockRead> {
    if (range !== undefined) {
      checkBytes("offset", range.offsetBytes);
      checkBytes("length", range.lengthBytes);
    }
    const sent = copyRange(range);
    return this.#call(options, async (store) => copyRead(await store.readBlock(ref, sent)));
  }

  writeBlock(ref: BlockRef, data: Uint8Array, options?: PeerCallOptions): Promise<void> {
    const sent = data.slice();
    return this.#call(options, (store) => store.writeBlock(ref, sent));
  }

  async writeBlockRange(
    ref: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
    options?: PeerCallOptions,
  ): Promise<Uint32Array> {
    checkBytes("offset", offsetBytes);
    const sent = data.slice();
    return this.#call(
      options,
      async (store) => (await store.writeBlockRange(ref, offsetBytes, sent, expectDigest)).slice(),
    );
  }

  deleteBlock(ref: BlockRef, options?: PeerCallOptions): Promise<boolean> {
    return this.#call(options, (store) => store.deleteBlock(ref));
  }

  hasBlocks(refs: BlockRef[], options?: PeerCallOptions): Promise<boolean[]> {
    const sent = [...refs];
    return this.#call(
      options,
      (store) => Promise.all(sent.map((ref) => store.hasBlock(ref))),
    );
  }

  flush(options?: PeerCallOptions): Promise<void> {
    return this.#call(options, (store) => store.flush());
  }

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
    return this.#send(options, this.#closing.signal, operation);
  }
}
