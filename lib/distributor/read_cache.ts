/**
 * The distributor's read cache: whole blocks read from peers, least recently
 * used first out, bounded in bytes.
 *
 * Unlike the original's LRU (whose values were shared slices that a caller
 * mutated), every block is copied in and every hit is copied out. A fetch
 * that raced with a write of the same block is not cached: a fill takes a
 * ticket before it fetches, and {@linkcode ReadCache.invalidate} voids the
 * tickets of that block, so a read that saw the old bytes cannot store them
 * after the write.
 *
 * @module
 */
import { assert } from "../assert.ts";
import type { BlockRef } from "../core/block_ref.ts";
import type { BlockRange, BlockRead } from "../storage/block_store.ts";

interface Entry {
  data: Uint8Array;
  sectorCrcs: Uint32Array;
  costBytes: number;
}

/** A fetch that may fill the cache: see {@linkcode ReadCache.begin}. */
export interface FillTicket {
  readonly key: string;
  /** False once the block was invalidated after the ticket was taken. */
  valid: boolean;
}

/**
 * A byte-bounded LRU of whole blocks keyed by ref.
 *
 * @example Usage
 * ```ts
 * import { ReadCache } from "./read_cache.ts";
 * import { BlockRef, BlockType } from "../core/block_ref.ts";
 * const cache = new ReadCache(1 << 20);
 * const ref = new BlockRef(1, BlockType.data, 1, 1);
 * const ticket = cache.begin(ref);
 * cache.fill(ticket, { data: new Uint8Array(4096).fill(1), sectorCrcs: new Uint32Array(1) });
 * if (cache.get(ref, { offsetBytes: 0, lengthBytes: 2 })?.data[1] !== 1) throw new Error("miss");
 * cache.invalidate(ref);
 * if (cache.get(ref) !== undefined) throw new Error("stale");
 * ```
 */
export class ReadCache {
  /** Most bytes the cached blocks and their sector CRCs may take. */
  readonly capacityBytes: number;
  #entries = new Map<string, Entry>();
  #sizeBytes = 0;
  #tickets = new Map<string, Set<FillTicket>>();

  /** Creates a cache of `capacityBytes`; 0 disables it. */
  constructor(capacityBytes: number) {
    assert(
      Number.isSafeInteger(capacityBytes) && capacityBytes >= 0,
      `bad capacity ${capacityBytes}`,
    );
    this.capacityBytes = capacityBytes;
  }

  /** Bytes cached now. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** Blocks cached now. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The cached block `ref` (or `range` of it), as a fresh copy, and marks it
   * most recently used; undefined on a miss.
   */
  get(ref: BlockRef, range?: BlockRange): BlockRead | undefined {
    const key = ref.key();
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    const offsetBytes = range?.offsetBytes ?? 0;
    const lengthBytes = range?.lengthBytes ?? entry.data.length - offsetBytes;
    return {
      data: entry.data.slice(offsetBytes, offsetBytes + lengthBytes),
      sectorCrcs: entry.sectorCrcs.slice(),
    };
  }

  /** Takes a ticket before fetching `ref` from a peer; pass it to `fill` or `end`. */
  begin(ref: BlockRef): FillTicket {
    const ticket: FillTicket = { key: ref.key(), valid: this.capacityBytes > 0 };
    if (!ticket.valid) return ticket;
    let tickets = this.#tickets.get(ticket.key);
    if (tickets === undefined) this.#tickets.set(ticket.key, tickets = new Set());
    tickets.add(ticket);
    return ticket;
  }

  /**
   * Caches a copy of the whole block fetched under `ticket`, unless the block
   * was invalidated since the ticket was taken or is larger than the cache.
   * Ends the ticket; returns whether the block was cached.
   */
  fill(ticket: FillTicket, block: BlockRead): boolean {
    const valid = ticket.valid;
    this.end(ticket);
    if (!valid) return false;
    const costBytes = block.data.byteLength + block.sectorCrcs.byteLength;
    if (costBytes > this.capacityBytes) return false;
    this.#remove(ticket.key);
    while (this.#sizeBytes + costBytes > this.capacityBytes) {
      const oldest = this.#entries.keys().next();
      assert(!oldest.done, "cache accounting is wrong");
      this.#remove(oldest.value);
    }
    this.#entries.set(ticket.key, {
      data: block.data.slice(),
      sectorCrcs: block.sectorCrcs.slice(),
      costBytes,
    });
    this.#sizeBytes += costBytes;
    return true;
  }

  /** Ends a ticket without filling (the fetch failed, or returned a range). */
  end(ticket: FillTicket): void {
    ticket.valid = false;
    const tickets = this.#tickets.get(ticket.key);
    if (tickets === undefined) return;
    tickets.delete(ticket);
    if (tickets.size === 0) this.#tickets.delete(ticket.key);
  }

  /** Drops `ref` and voids every fetch of it in flight (its bytes changed). */
  invalidate(ref: BlockRef): void {
    const key = ref.key();
    this.#remove(key);
    for (const ticket of this.#tickets.get(key) ?? []) ticket.valid = false;
  }

  /** Drops everything. */
  clear(): void {
    this.#entries.clear();
    this.#sizeBytes = 0;
    for (const tickets of this.#tickets.values()) {
      for (const ticket of tickets) ticket.valid = false;
    }
  }

  #remove(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    this.#sizeBytes -= entry.costBytes;
  }
}
