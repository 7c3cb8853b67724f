import assertNode from "node:assert/strict";
import { Prng } from "../prng.ts";
import { IO_THREAD_DEPTH, IoThread, ioThreadStats } from "./io_thread.ts";

const libc = Deno.dlopen("libc.so.6", {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
});

const O_RDWR = 0o2;
const EBADF = 9;

/** A temporary file of `bytes` and a raw descriptor on it. */
async function tempFile(bytes: number): Promise<{ path: string; fd: number } & AsyncDisposable> {
  const path = await Deno.makeTempFile({ prefix: "torus-io-thread-" });
  await Deno.truncate(path, bytes);
  const fd = libc.symbols.open(new TextEncoder().encode(`${path}\0`), O_RDWR, 0);
  assertNode.ok(fd >= 0, `cannot open ${path}`);
  return {
    path,
    fd,
    async [Symbol.asyncDispose]() {
      libc.symbols.close(fd);
      await Deno.remove(path);
    },
  };
}

Deno.test("IoThread: writes land where asked, in pieces, and read back; subarrays are addressed at their offset", async () => {
  await using file = await tempFile(1 << 20);
  const thread = IoThread.acquire();
  try {
    const prng = new Prng(0x10);
    const backing = prng.fill(new Uint8Array(300_000));
    const source = backing.subarray(12_345, 12_345 + 200_000); // not at the buffer's start
    const jobsBefore = ioThreadStats.jobs;
    // 7 KiB pieces: 29 pwrite calls, the last one short.
    assertNode.equal(await thread.write(file.fd, source, 4096, 7 * 1024), source.length);
    const onDisk = await Deno.readFile(file.path);
    assertNode.deepEqual(onDisk.subarray(4096, 4096 + source.length), source);
    assertNode.ok(onDisk.subarray(0, 4096).every((b) => b === 0));

    const target = new Uint8Array(250_000).fill(0xee);
    const window = target.subarray(1000, 1000 + source.length);
    assertNode.equal(await thread.read(file.fd, window, 4096), source.length);
    assertNode.deepEqual(window, source);
    assertNode.ok(target.subarray(0, 1000).every((b) => b === 0xee), "bytes before the window");
    assertNode.ok(target.subarray(1000 + source.length).every((b) => b === 0xee), "bytes after");
    assertNode.equal(ioThreadStats.jobs - jobsBefore, 2);
  } finally {
    thread.release();
  }
});

Deno.test("IoThread: a failing call returns -errno, a read past the end the bytes it found", async () => {
  await using file = await tempFile(64 * 1024);
  const thread = IoThread.acquire();
  try {
    const buffer = new Uint8Array(128 * 1024);
    assertNode.equal(await thread.read(file.fd, buffer, 0), 64 * 1024);
    assertNode.equal(await thread.read(file.fd, buffer, 1 << 20), 0);
    assertNode.equal(await thread.read(-1, buffer, 0), -EBADF);
    assertNode.equal(await thread.write(-1, buffer, 0, buffer.length), -EBADF);
    // The thread still serves after failures.
    buffer.fill(7);
    assertNode.equal(await thread.write(file.fd, buffer, 0, buffer.length), buffer.length);
  } finally {
    thread.release();
  }
});

Deno.test("IoThread: a full ring has no room; jobs complete in order and free it", async () => {
  await using file = await tempFile(IO_THREAD_DEPTH * 4096);
  const thread = IoThread.acquire();
  try {
    const buffers = Array.from(
      { length: IO_THREAD_DEPTH },
      (_, i) => new Uint8Array(4096).fill(i + 1),
    );
    const order: number[] = [];
    const jobs = buffers.map((buffer, i) =>
      thread.write(file.fd, buffer, i * 4096, 4096).then((result) => {
        order.push(i);
        return result;
      })
    );
    assertNode.equal(thread.hasRoom, false);
    assertNode.equal(thread.inFlight, IO_THREAD_DEPTH);
    assertNode.throws(() => thread.write(file.fd, buffers[0]!, 0, 4096), /without room/);
    assertNode.deepEqual(await Promise.all(jobs), buffers.map(() => 4096));
    assertNode.deepEqual(order, buffers.map((_, i) => i));
    assertNode.equal(thread.hasRoom, true);
    const onDisk = await Deno.readFile(file.path);
    for (let i = 0; i < IO_THREAD_DEPTH; i++) assertNode.equal(onDisk[i * 4096 + 4095], i + 1);
  } finally {
    thread.release();
  }
});

Deno.test("IoThread: users share one thread; the last release stops it and the next acquire starts another", async () => {
  await using file = await tempFile(4096);
  const first = IoThread.acquire();
  const second = IoThread.acquire();
  assertNode.equal(first, second);
  const buffer = new Uint8Array(4096).fill(3);
  assertNode.equal(await first.write(file.fd, buffer, 0, 4096), 4096);
  first.release();
  // Still served: one user is left.
  assertNode.equal(await second.read(file.fd, buffer, 0), 4096);
  second.release();
  assertNode.throws(() => second.release(), /released more often/);
  const third = IoThread.acquire();
  try {
    assertNode.notEqual(third, first);
    assertNode.equal(await third.read(file.fd, buffer, 0), 4096);
    assertNode.ok(buffer.every((b) => b === 3));
  } finally {
    third.release();
  }
});
