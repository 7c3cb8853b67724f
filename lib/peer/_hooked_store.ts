/**
 * A BlockStore wrapper for tests of what serves it: holds calls at a gate,
 * records them, and can lie about what it read. Test-only.
 *
 * @module
 */
import type { BlockRef } from "../core/block_ref.ts";
import type { BlockRange, BlockRead, BlockStore } from "../storage/block_store.ts";

/**
 * A store that forwards to another, and can hold calls at a gate, count
 * them, and lie about what it read.
 */
export class HookedStore implements BlockStore {
  readonly kind = "hooked";
  readonly inner: BlockStore;
  /** Names of the calls that reached the store. */
  calls: string[] = [];
  /** Refs (keys) whose reads and writes wait at the gate. */
  gated = new Set<string>();
  /** When set, reads return these bytes (same length) instead, with the true CRCs. */
  lie: ((data: Uint8Array) => Uint8Array) | null = null;
  #gate = Promise.withResolvers<void>();
  #waiting = 0;
  #waiters: (() => void)[] = [];

  constructor(inner: BlockStore) {
    this.inner = inner;
  }

  get blockSizeBytes(): number {
    return this.inner.blockSizeBytes;
  }

  /** Calls waiting at the gate now. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Resolves once `count` calls wait at the gate. */
  async untilWaiting(count: number): Promise<void> {
    while (this.#waiting < count) await new Promise<void>((r) => this.#waiters.push(r));
  }

  /** Lets every gated call through, now and later. */
  open(): void {
    this.gated.clear();
    this.#gate.resolve();
  }

  async #pass(name: string, target?: BlockRef): Promise<void> {
    this.calls.push(name);
    if (target !== undefined && this.gated.has(target.key())) {
      this.#waiting++;
      for (const wake of this.#waiters.splice(0)) wake();
      try {
        await this.#gate.promise;
      } finally {
        this.#waiting--;
      }
    }
  }

  numBlocks(): number {
    return this.inner.numBlocks();
  }
  usedBlocks(): number {
    return this.inner.usedBlocks();
  }
  async hasBlock(target: BlockRef): Promise<boolean> {
    await this.#pass("hasBlock");
    return await this.inner.hasBlock(target);
  }
  async readBlock(target: BlockRef, range?: BlockRange): Promise<BlockRead> {
    await this.#pass("readBlock", target);
    const read = await this.inner.readBlock(target, range);
    return this.lie === null ? read : { ...read, data: this.lie(read.data) };
  }
  async writeBlock(target: BlockRef, data: Uint8Array, offsetBytes?: number): Promise<Uint32Array> {
    await this.#pass("writeBlock", target);
    return await this.inner.writeBlock(target, data, offsetBytes);
  }
  async writeBlockRange(
    target: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    await this.#pass("writeBlockRange", target);
    return await this.inner.writeBlockRange(target, offsetBytes, data, expectDigest);
  }
  async copyBlock(
    source: BlockRef,
    target: BlockRef,
    offsetBytes: number,
    data: Uint8Array,
    expectDigest?: number,
  ): Promise<Uint32Array> {
    await this.#pass("copyBlock", target);
    return await this.inner.copyBlock(source, target, offsetBytes, data, expectDigest);
  }
  async deleteBlock(target: BlockRef): Promise<boolean> {
    await this.#pass("deleteBlock", target);
    return await this.inner.deleteBlock(target);
  }
  blockRefs(): BlockRef[] {
    return this.inner.blockRefs();
  }
  async flush(): Promise<void> {
    await this.#pass("flush");
    await this.inner.flush();
  }
  async close(): Promise<void> {
    this.open();
    await this.inner.close();
  }
}
