import assert from "node:assert/strict";
import { GC_TRIGGERS, GcStats } from "./gc_stats.ts";

Deno.test("GcStats: counts runs, time and the longest run per trigger, and outcomes overall", () => {
  const stats = new GcStats();
  stats.record("full", 120, { kind: "ran", deletedBlocks: 7 });
  stats.record("full", 30, { kind: "ran", deletedBlocks: 2 });
  stats.record("interval", 5, { kind: "skipped" });
  stats.record("close", 8, { kind: "failed" });
  stats.record("close", -3, { kind: "ran", deletedBlocks: 0 }); // a clock set back
  const snapshot = stats.snapshot();
  assert.deepEqual(snapshot.byTrigger, {
    interval: { runs: 1, totalMs: 5, maxMs: 5 },
    full: { runs: 2, totalMs: 150, maxMs: 120 },
    close: { runs: 2, totalMs: 8, maxMs: 8 },
  });
  assert.equal(snapshot.deletedBlocks, 9);
  assert.equal(snapshot.skipped, 1);
  assert.equal(snapshot.failed, 1);
  assert.deepEqual(Object.keys(snapshot.byTrigger).sort(), [...GC_TRIGGERS].sort());
});

Deno.test("GcStats: a snapshot is a copy that later runs do not change", () => {
  const stats = new GcStats();
  const before = stats.snapshot();
  stats.record("interval", 10, { kind: "ran", deletedBlocks: 1 });
  assert.equal(before.byTrigger.interval.runs, 0);
  assert.equal(before.deletedBlocks, 0);
  before.byTrigger.interval.runs = 99;
  assert.equal(stats.snapshot().byTrigger.interval.runs, 1);
});
