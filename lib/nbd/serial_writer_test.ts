import assert from "node:assert/strict";
import {
  type ByteSink,
  SERIAL_WRITER_COALESCE_BYTES,
  SERIAL_WRITER_DIRECT_BYTES,
  SerialWriter,
} from "./serial_writer.ts";

function sink(options: { maxPerWrite?: number; delayMs?: number } = {}) {
  const out: number[] = [];
  const writes: number[] = [];
  let fail: Error | null = null;
  const s: ByteSink & { out: number[]; writes: number[]; failWith(e: Error): void } = {
    out,
    writes,
    failWith(e) {
      fail = e;
    },
    async write(bytes) {
      if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
      if (fail) throw fail;
      const count = Math.min(bytes.length, options.maxPerWrite ?? bytes.length);
      for (const b of bytes.subarray(0, count)) out.push(b);
      writes.push(count);
      return count;
    },
  };
  return s;
}

Deno.test("SerialWriter: messages are written whole and in order", async () => {
  const target = sink({ maxPerWrite: 3, delayMs: 1 });
  const writer = new SerialWriter(target);
  const messages = Array.from(
    { length: 20 },
    (_, i) => [new Uint8Array(5).fill(i), new Uint8Array([i])],
  );
  await Promise.all(messages.map((parts) => writer.write(parts)));
  const expected = messages.flatMap((parts) => parts.flatMap((p) => [...p]));
  assert.deepEqual(target.out, expected);
  await writer.idle();
});

Deno.test("SerialWriter: small queued messages coalesce into few writes", async () => {
  const target = sink({ delayMs: 5 });
  const writer = new SerialWriter(target);
  const all = [];
  for (let i = 0; i < 100; i++) all.push(writer.write([new Uint8Array(16), new Uint8Array(4096)]));
  await Promise.all(all);
  assert.ok(target.writes.length < 10, `${target.writes.length} writes`);
  assert.equal(target.out.length, 100 * (16 + 4096));
});

Deno.test("SerialWriter: large parts are written without copying into a batch", async () => {
  const target = sink();
  const writer = new SerialWriter(target);
  const big = new Uint8Array(SERIAL_WRITER_COALESCE_BYTES * 2).fill(9);
  await writer.write([new Uint8Array(28), big]);
  assert.deepEqual(target.writes, [28, big.length]);
});

Deno.test("SerialWriter: the runs of a batch share one reused buffer; a large part that does not fit goes as it is", async () => {
  const buffers: Uint8Array[] = [];
  const writer = new SerialWriter({
    write(bytes) {
      buffers.push(bytes);
      return Promise.resolve(bytes.length);
    },
  });
  const part = 100 * 1024;
  assert.ok(part > SERIAL_WRITER_DIRECT_BYTES && 2 * part <= SERIAL_WRITER_COALESCE_BYTES);
  const parts = [1, 2, 3, 4].map((fill) => new Uint8Array(part).fill(fill));
  const send = async () => {
    writer.cork();
    const all = [...parts, new Uint8Array(16).fill(5)].map((bytes) => writer.write([bytes]));
    writer.uncork();
    await Promise.all(all);
  };
  await send();
  assert.deepEqual(buffers.map((bytes) => bytes.length), [2 * part, part, part + 16]);
  assert.equal(buffers[1]!.buffer, parts[2]!.buffer, "not copied");
  assert.equal(buffers[0]!.buffer, buffers[2]!.buffer, "one buffer for both runs");
  assert.deepEqual([buffers[0]![0], buffers[0]![part], buffers[2]![0], buffers[2]![part]], [
    1,
    2,
    4,
    5,
  ]);
  const scratch = buffers[0]!.buffer;
  buffers.length = 0;
  await send();
  assert.equal(buffers[0]!.buffer, scratch, "reused by the next batch");
});

Deno.test("SerialWriter: a failed write fails queued and later messages", async () => {
  const target = sink({ delayMs: 2 });
  const writer = new SerialWriter(target);
  target.failWith(new Deno.errors.BrokenPipe("gone"));
  const first = writer.write([new Uint8Array(1)]);
  const second = writer.write([new Uint8Array(1)]);
  await assert.rejects(first, Deno.errors.BrokenPipe);
  await assert.rejects(second, Deno.errors.BrokenPipe);
  assert.ok(writer.broken);
  await assert.rejects(writer.write([new Uint8Array(1)]), Deno.errors.BrokenPipe);
  await writer.idle();
});

Deno.test("SerialWriter: a cork holds messages back; uncork writes them in one write", async () => {
  const target = sink();
  const writer = new SerialWriter(target);
  writer.cork();
  assert.ok(writer.corked);
  const all = [];
  for (let i = 0; i < 10; i++) all.push(writer.write([new Uint8Array([i]), new Uint8Array(100)]));
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(target.writes.length, 0);
  let idle = false;
  const idleDone = writer.idle().then(() => idle = true);
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(idle, false, "messages held by a cork are not idle");
  writer.uncork();
  await Promise.all(all);
  await idleDone;
  assert.deepEqual(target.writes, [10 * 101]);
  // Uncorked, a message goes at once.
  await writer.write([new Uint8Array(3)]);
  assert.deepEqual(target.writes, [10 * 101, 3]);
});
