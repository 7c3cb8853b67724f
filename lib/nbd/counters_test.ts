import assert from "node:assert/strict";
import {
  NBD_LATENCY_BUCKETS_SECONDS,
  NBD_LATENCY_SAMPLE_EVERY,
  NbdCounters,
  NOT_TIMED,
} from "./counters.ts";
import {
  NBD_CMD_DISC,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
} from "./protocol.ts";

/**
 * Counters timing every request on a clock the test sets: `finish(ms)`
 * records a request that took `ms`.
 */
function timedCounters() {
  let nowMs = 1_000;
  const counters = new NbdCounters(() => nowMs, 1);
  const finish = (type: number, lengthBytes: number, ok: boolean, ms: number) => {
    const startMs = counters.start(type);
    nowMs += ms;
    counters.record(type, lengthBytes, ok, startMs);
  };
  return { counters, finish };
}

Deno.test("NbdCounters: latency buckets are 50 µs doubling, bounds inclusive, the rest beyond", () => {
  assert.equal(NBD_LATENCY_BUCKETS_SECONDS[0], 50e-6);
  assert.equal(NBD_LATENCY_BUCKETS_SECONDS[4], 800e-6);
  assert.ok(NBD_LATENCY_BUCKETS_SECONDS.at(-1)! > 3);
  const { counters, finish } = timedCounters();
  finish(NBD_CMD_READ, 4096, true, 0.05); // exactly the first bound
  finish(NBD_CMD_READ, 4096, true, 0.051);
  finish(NBD_CMD_READ, 4096, true, 1);
  finish(NBD_CMD_READ, 4096, true, 10_000);
  const read = counters.snapshot().commands.read;
  const expected = new Array(NBD_LATENCY_BUCKETS_SECONDS.length + 1).fill(0);
  expected[0] = 1;
  expected[1] = 1;
  expected[5] = 1; // 1 ms: above 0.8 ms, within 1.6 ms
  expected[NBD_LATENCY_BUCKETS_SECONDS.length] = 1;
  assert.deepEqual(read.buckets, expected);
  assert.equal(read.requests, 4);
  assert.ok(Math.abs(read.seconds - 10.001101) < 1e-9, `${read.seconds}`);
  assert.equal(read.timed, 4);
  assert.equal(read.bytes, 4 * 4096);
});

Deno.test("NbdCounters: errors count apart and cover no bytes; DISC and unknown commands are ignored", () => {
  const { counters, finish } = timedCounters();
  finish(NBD_CMD_WRITE, 65536, true, 1);
  finish(NBD_CMD_WRITE, 1 << 30, false, 1);
  finish(NBD_CMD_TRIM, 8192, true, 1);
  finish(NBD_CMD_FLUSH, 0, false, 1);
  finish(NBD_CMD_DISC, 0, true, 1);
  finish(9, 4096, true, 1);
  counters.connectionAccepted();
  counters.connectionAccepted();
  counters.connectionRefused();
  const snapshot = counters.snapshot();
  assert.deepEqual(
    Object.fromEntries(
      Object.entries(snapshot.commands).map((
        [command, c],
      ) => [command, [c.requests, c.errors, c.bytes]]),
    ),
    {
      read: [0, 0, 0],
      write: [2, 1, 65536],
      flush: [1, 1, 0],
      trim: [1, 0, 8192],
      write_zeroes: [0, 0, 0],
      block_status: [0, 0, 0],
    },
  );
  assert.equal(snapshot.connectionsAccepted, 2);
  assert.equal(snapshot.connectionsRefused, 1);
});

Deno.test("NbdCounters: a snapshot is a copy; a clock set back counts as no time", () => {
  let nowMs = 500;
  const counters = new NbdCounters(() => nowMs, 1);
  const snapshot = counters.snapshot();
  snapshot.commands.read.buckets[0] = 99;
  nowMs = 100;
  counters.record(NBD_CMD_READ, 512, true, 500);
  const read = counters.snapshot().commands.read;
  assert.equal(read.buckets[0], 1);
  assert.equal(read.seconds, 0);
});

Deno.test("NbdCounters: one request in NBD_LATENCY_SAMPLE_EVERY of each command is timed, every one counted", () => {
  let clockReads = 0;
  const counters = new NbdCounters(() => {
    clockReads++;
    return clockReads;
  });
  const n = 2 * NBD_LATENCY_SAMPLE_EVERY + 1;
  for (let i = 0; i < n; i++) {
    counters.record(NBD_CMD_READ, 4096, true, counters.start(NBD_CMD_READ));
  }
  // Another command has its own count: its first request is timed.
  counters.record(NBD_CMD_FLUSH, 0, true, counters.start(NBD_CMD_FLUSH));
  assert.equal(counters.start(NBD_CMD_DISC), NOT_TIMED);
  assert.equal(counters.start(9), NOT_TIMED);
  const { read, flush } = counters.snapshot().commands;
  assert.deepEqual([read.requests, read.timed, read.bytes], [n, 3, n * 4096]);
  assert.equal(read.buckets.reduce((sum, count) => sum + count, 0), 3);
  assert.deepEqual([flush.requests, flush.timed], [1, 1]);
  assert.equal(clockReads, 2 * 4, "two clock reads per timed request, none otherwise");
  assert.throws(() => new NbdCounters(undefined, 0), RangeError);
});
