import assert from "node:assert/strict";
import {
  BUFFER_POOL_CLASS_MAX_BYTES,
  BUFFER_POOL_CLASS_MIN_BYTES,
  BUFFER_POOL_HEADROOM_BYTES,
  BufferPool,
} from "./buffer_pool.ts";

Deno.test("BufferPool: a given buffer is taken again for a request of its class", () => {
  const pool = new BufferPool(8 * 1024 * 1024);
  const first = pool.take(1_000_000);
  assert.equal(first.length, 1_000_000);
  const classBytes = 1024 * 1024 + BUFFER_POOL_HEADROOM_BYTES;
  assert.equal(first.buffer.byteLength, classBytes);
  pool.give(first);
  assert.equal(pool.idleBytes, classBytes);
  const second = pool.take(600_000);
  assert.equal(second.buffer, first.buffer);
  assert.equal(second.length, 600_000);
  assert.equal(pool.idleBytes, 0);
  // A different class is a different buffer.
  pool.give(second);
  assert.notEqual(pool.take(100).buffer, first.buffer);
  // A power of two and a header fit the same class.
  const framed = pool.take(1024 * 1024 + BUFFER_POOL_HEADROOM_BYTES);
  assert.equal(framed.buffer, first.buffer);
  assert.notEqual(pool.take(classBytes + 1).buffer.byteLength, classBytes);
});

Deno.test("BufferPool: keeps at most its limit of idle bytes", () => {
  const classBytes = BUFFER_POOL_CLASS_MIN_BYTES + BUFFER_POOL_HEADROOM_BYTES;
  const pool = new BufferPool(2 * classBytes);
  const buffers = [1, 2, 3].map(() => pool.take(BUFFER_POOL_CLASS_MIN_BYTES));
  for (const buffer of buffers) pool.give(buffer);
  assert.equal(pool.idleBytes, 2 * classBytes);
  const taken = [1, 2, 3].map(() => pool.take(10));
  assert.equal(new Set(taken.map((bytes) => bytes.buffer)).size, 3);
  assert.ok(taken.filter((bytes) => buffers.some((b) => b.buffer === bytes.buffer)).length === 2);
});

Deno.test("BufferPool: foreign, offset and oversized buffers are not pooled", () => {
  const pool = new BufferPool(1 << 30);
  pool.give(new Uint8Array(1000));
  pool.give(new Uint8Array(new ArrayBuffer(BUFFER_POOL_CLASS_MIN_BYTES), 10, 100));
  const oversized = BUFFER_POOL_CLASS_MAX_BYTES + BUFFER_POOL_HEADROOM_BYTES + 1;
  const big = pool.take(oversized);
  assert.equal(big.length, oversized);
  pool.give(big);
  assert.equal(pool.idleBytes, 0);
  // A pooled buffer of exactly a class size is accepted.
  pool.give(pool.take(BUFFER_POOL_CLASS_MIN_BYTES));
  assert.equal(pool.idleBytes, BUFFER_POOL_CLASS_MIN_BYTES + BUFFER_POOL_HEADROOM_BYTES);
});

Deno.test("BufferPool: giving a buffer twice is a bug", () => {
  const pool = new BufferPool(1 << 30);
  const bytes = pool.take(5000);
  pool.give(bytes);
  assert.throws(() => pool.give(bytes), /twice/);
});
