import assert from "node:assert/strict";
import { BYTE_READER_DIRECT_BYTES, ByteReader, type ByteSource } from "./byte_reader.ts";

/** A source that hands out `data` in pieces of at most `pieceBytes`. */
function source(data: Uint8Array, pieceBytes: number): ByteSource & { reads: number } {
  let at = 0;
  const result = {
    reads: 0,
    read(buffer: Uint8Array): Promise<number | null> {
      result.reads++;
      if (at >= data.length) return Promise.resolve(null);
      const count = Math.min(pieceBytes, buffer.length, data.length - at);
      buffer.set(data.subarray(at, at + count));
      at += count;
      return Promise.resolve(count);
    },
  };
  return result;
}

const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);

Deno.test("ByteReader: exact reads across piece boundaries", async () => {
  const data = bytes(1000);
  const reader = new ByteReader(source(data, 7));
  assert.deepEqual(await reader.readView(28), data.subarray(0, 28));
  assert.deepEqual(await reader.readCopy(500), data.subarray(28, 528));
  assert.deepEqual(await reader.readCopy(472), data.subarray(528));
  assert.equal(await reader.readView(1), null);
  assert.equal(await reader.readCopy(1), null);
});

Deno.test("ByteReader: large reads go straight into their own array", async () => {
  const data = bytes(3 * BYTE_READER_DIRECT_BYTES + 5);
  const reader = new ByteReader(source(data, 100_000));
  assert.deepEqual(await reader.readView(5), data.subarray(0, 5));
  const big = await reader.readCopy(3 * BYTE_READER_DIRECT_BYTES);
  assert.deepEqual(big, data.subarray(5));
});

Deno.test("ByteReader: a stream ending mid-message throws UnexpectedEof", async () => {
  const reader = new ByteReader(source(bytes(10), 3));
  await assert.rejects(() => reader.readView(28), Deno.errors.UnexpectedEof);
  const large = new ByteReader(source(bytes(BYTE_READER_DIRECT_BYTES), 1000));
  await assert.rejects(
    () => large.readCopy(2 * BYTE_READER_DIRECT_BYTES),
    Deno.errors.UnexpectedEof,
  );
  const skipping = new ByteReader(source(bytes(10), 3));
  await assert.rejects(() => skipping.skip(11), Deno.errors.UnexpectedEof);
});

Deno.test("ByteReader: skip drops bytes without holding them", async () => {
  const data = bytes(600_000);
  const reader = new ByteReader(source(data, 65536));
  await reader.readView(10);
  await reader.skip(500_000);
  assert.deepEqual(await reader.readCopy(10), data.subarray(500_010, 500_020));
  assert.ok(reader.bufferedBytes < 600_000);
});

Deno.test("ByteReader: views compact the buffer instead of growing it", async () => {
  const data = bytes(2_000_000);
  const reader = new ByteReader(source(data, 50_000));
  for (let at = 0; at < data.length; at += 28 * 100) {
    const want = Math.min(28 * 100, data.length - at);
    assert.deepEqual(await reader.readView(want), data.subarray(at, at + want));
  }
  assert.equal(await reader.readView(28), null);
});
