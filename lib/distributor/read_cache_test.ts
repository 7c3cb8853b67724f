import assert from "node:assert/strict";
import { AssertionError } from "../assert.ts";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import type { BlockRead } from "../storage/block_store.ts";
import { ReadCache } from "./read_cache.ts";

const BLOCK = 1024;
/** Bytes one cached block of BLOCK bytes and one sector CRC costs. */
const COST = BLOCK + 4;
const ref = (index: number) => new BlockRef(1, BlockType.data, 1, index);
const block = (fill: number): BlockRead => ({
  data: new Uint8Array(BLOCK).fill(fill),
  sectorCrcs: new Uint32Array([fill]),
});

function put(cache: ReadCache, index: number, fill = index): boolean {
  return cache.fill(cache.begin(ref(index)), block(fill));
}

Deno.test("ReadCache: a hit returns the block or a range of it, as a copy", () => {
  const cache = new ReadCache(10 * COST);
  const source = block(3);
  assert.ok(cache.fill(cache.begin(ref(1)), source));
  source.data[0] = 9; // the caller's buffer is not the cached one
  const hit = cache.get(ref(1))!;
  assert.equal(hit.data.length, BLOCK);
  assert.equal(hit.data[0], 3);
  hit.data[0] = 8;
  hit.sectorCrcs[0] = 8;
  const again = cache.get(ref(1), { offsetBytes: 10, lengthBytes: 5 })!;
  assert.deepEqual(again.data, new Uint8Array(5).fill(3));
  assert.deepEqual(again.sectorCrcs, new Uint32Array([3]));
  assert.equal(cache.get(ref(2)), undefined);
});

Deno.test("ReadCache: bounded in bytes, least recently used evicted first", () => {
  const cache = new ReadCache(3 * COST);
  for (let i = 1; i <= 3; i++) assert.ok(put(cache, i));
  assert.equal(cache.sizeBytes, 3 * COST);
  cache.get(ref(1)); // 2 is now the least recently used
  put(cache, 4);
  assert.equal(cache.size, 3);
  assert.ok(cache.sizeBytes <= cache.capacityBytes);
  assert.equal(cache.get(ref(2)), undefined);
  assert.ok(cache.get(ref(1)) && cache.get(ref(3)) && cache.get(ref(4)));
  // Refilling a cached block replaces it without double counting.
  put(cache, 4, 44);
  assert.equal(cache.sizeBytes, 3 * COST);
  assert.equal(cache.get(ref(4))!.data[0], 44);
});

Deno.test("ReadCache: a block larger than the cache, or a disabled cache, stores nothing", () => {
  const small = new ReadCache(COST - 1);
  assert.equal(put(small, 1), false);
  assert.equal(small.sizeBytes, 0);
  const off = new ReadCache(0);
  assert.equal(put(off, 1), false);
  assert.equal(off.get(ref(1)), undefined);
  assert.throws(() => new ReadCache(-1), AssertionError);
});

Deno.test("ReadCache: invalidate() drops the block and voids fetches in flight", () => {
  const cache = new ReadCache(10 * COST);
  put(cache, 1);
  cache.invalidate(ref(1));
  assert.equal(cache.get(ref(1)), undefined);
  assert.equal(cache.sizeBytes, 0);
  // A read began, a write invalidated, then the read came back with old bytes.
  const ticket = cache.begin(ref(2));
  const other = cache.begin(ref(3));
  cache.invalidate(ref(2));
  assert.equal(cache.fill(ticket, block(2)), false, "a fetch older than a write is not cached");
  assert.equal(cache.get(ref(2)), undefined);
  assert.ok(cache.fill(other, block(3)), "other blocks are unaffected");
  // A fresh ticket after the write fills.
  assert.ok(put(cache, 2));
  cache.clear();
  assert.equal(cache.size, 0);
  assert.equal(cache.sizeBytes, 0);
});

Deno.test("ReadCache: end() abandons a ticket", () => {
  const cache = new ReadCache(10 * COST);
  const ticket = cache.begin(ref(1));
  cache.end(ticket);
  assert.equal(cache.fill(ticket, block(1)), false);
  assert.equal(cache.size, 0);
});
