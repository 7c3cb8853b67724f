import assert from "node:assert/strict";
import {
  BUFFER_POOL_CLASS_MAX_BYTES,
  BUFFER_POOL_CLASS_MIN_BYTES,
  BufferPool,
} from "./buffer_pool.ts";

Deno.test("BufferPool: a given buffer is taken again for a request of its class", () => {
  const pool = new BufferPool(8 * 1024 * 1024);
  const first = pool.take(1_000_000);
  assert.equal(first.length, 1_000_000);
  assert.equal(first.buffer.byteLength, 1024 * 1024);
  pool.give(first);
  assert.equal(pool.idleBytes, 1024 * 1024);
  const second = pool.take(600_000);
  assert.equal(second.buffer, first.buffer);
  assert.equal(second.length, 600_000);
  assert.equal(pool.idleBytes, 0);
  // A different class is a different buffer.
  pool.give(second);
  assert.notEqual(pool.take(100).buffer, first.buffer);
});

Deno.test("BufferPool: keeps at most its limit of idle bytes", () => {
  const pool = new BufferPool(2 * BUFFER_POOL_CLASS_MIN_BYTES);
  const buffers = [1, 2, 3].map(() => pool.take(BUFFER_POOL_CLASS_MIN_BYTES));
  for (const buffer of buffers) pool.give(buffer);
  assert.equal(pool.idleBytes, 2 * BUFFER_POOL_CLASS_MIN_BYTES);
  const taken = [1, 2, 3].map(() => pool.take(10));
  assert.equal(new Set(taken.map((bytes) => bytes.buffer)).size, 3);
  assert.ok(taken.filter((bytes) => buffers.some((b) => b.buffer === bytes.buffer)).length === 2);
});

Deno.test("BufferPool: foreign, offset and oversized buffers are not pooled", () => {
  const pool = new BufferPool(1 << 30);
  pool.give(new Uint8Array(1000));
  pool.give(new Uint8Array(new ArrayBuffer(BUFFER_POOL_CLASS_MIN_BYTES), 10, 100));
  const big = pool.take(BUFFER_POOL_CLASS_MAX_BYTES + 1);
  assert.equal(big.length, BUFFER_POOL_CLASS_MAX_BYTES + 1);
  pool.give(big);
  assert.equal(pool.idleBytes, 0);
  // A pooled buffer of exactly a class size is accepted.
  pool.give(pool.take(BUFFER_POOL_CLASS_MIN_BYTES));
  assert.equal(pool.idleBytes, BUFFER_POOL_CLASS_MIN_BYTES);
});

Deno.test("BufferPool: giving a buffer twice is a bug", () => {
  const pool = new BufferPool(1 << 30);
  const bytes = pool.take(5000);
  pool.give(bytes);
  assert.throws(() => pool.give(bytes), /twice/);
});
