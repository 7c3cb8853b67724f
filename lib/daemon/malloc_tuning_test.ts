import assertNode from "node:assert/strict";
import { ManualClock } from "../clock.ts";
import { MALLOC_TRIM_INTERVAL_MS, MallocTuning } from "./malloc_tuning.ts";

/** Lets the nonblocking FFI call and the promise chain after it finish. */
async function settle(tuning: MallocTuning, trims: number): Promise<void> {
  for (let i = 0; i < 200 && tuning.trims < trims; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("MallocTuning: caps glibc's arenas and trims the C heap every interval until stopped", async () => {
  const clock = new ManualClock();
  const tuning = MallocTuning.start(clock);
  try {
    assertNode.equal(tuning.outcome, "tuned");
    await tuning.trim();
    assertNode.equal(tuning.trims, 1);
    clock.advance(MALLOC_TRIM_INTERVAL_MS - 1);
    await settle(tuning, 2);
    assertNode.equal(tuning.trims, 1, "not before the interval");
    clock.advance(1);
    await settle(tuning, 2);
    assertNode.equal(tuning.trims, 2, "one trim per interval");
    clock.advance(MALLOC_TRIM_INTERVAL_MS);
    await settle(tuning, 3);
    assertNode.equal(tuning.trims, 3, "and the next one is scheduled");
  } finally {
    await tuning.stop();
  }
  clock.advance(10 * MALLOC_TRIM_INTERVAL_MS);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assertNode.equal(tuning.trims, 3, "no trim after stop()");
  await tuning.trim();
  assertNode.equal(tuning.trims, 3, "trim() after stop() does nothing");
});

Deno.test("MallocTuning: without glibc's allocator it tunes nothing and does not fail", async () => {
  const clock = new ManualClock();
  const tuning = MallocTuning.start(clock, "libtorus-no-such-library.so");
  assertNode.equal(tuning.outcome, "unavailable");
  await tuning.trim();
  clock.advance(MALLOC_TRIM_INTERVAL_MS);
  assertNode.equal(tuning.trims, 0);
  await tuning.stop();
});
