import assert from "node:assert/strict";
import { ManualClock } from "../clock.ts";
import { MemoryMetadata } from "../metadata/memory_metadata.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { GcStats } from "./gc_stats.ts";
import { renderMetrics, type StatusSources } from "./http_status.ts";

function sources(gc?: GcStats): StatusSources {
  return {
    store: new MemoryBlockStore({ blockSizeBytes: 4096, numBlocks: 16 }),
    metadata: new MemoryMetadata({ clock: new ManualClock(0) }),
    nbd: () => null,
    gc: gc && (() => gc.snapshot()),
  };
}

/** The value of the sample `name` (with its labels) in `text`; fails when it is not exactly once. */
function sample(text: string, name: string): number {
  const lines = text.split("\n").filter((line) => line.startsWith(`${name} `));
  assert.equal(lines.length, 1, `${name}: ${lines.length} samples`);
  return Number(lines[0]!.slice(name.length + 1));
}

Deno.test("renderMetrics: garbage collections by trigger, in seconds, with their totals", () => {
  const gc = new GcStats();
  gc.record("full", 1500, { kind: "ran", deletedBlocks: 40 });
  gc.record("full", 500, { kind: "ran", deletedBlocks: 2 });
  gc.record("interval", 20, { kind: "skipped" });
  const text = renderMetrics(sources(gc));
  assert.equal(sample(text, 'torus_gc_runs_total{trigger="full"}'), 2);
  assert.equal(sample(text, 'torus_gc_runs_total{trigger="interval"}'), 1);
  assert.equal(sample(text, 'torus_gc_runs_total{trigger="close"}'), 0);
  assert.equal(sample(text, 'torus_gc_seconds_total{trigger="full"}'), 2);
  assert.equal(sample(text, 'torus_gc_max_seconds{trigger="full"}'), 1.5);
  assert.equal(sample(text, 'torus_gc_seconds_total{trigger="interval"}'), 0.02);
  assert.equal(sample(text, "torus_gc_deleted_blocks_total"), 42);
  assert.equal(sample(text, "torus_gc_skipped_total"), 1);
  assert.equal(sample(text, "torus_gc_failed_total"), 0);
  assert.match(text, /^# TYPE torus_gc_runs_total counter$/m);
  assert.match(text, /^# TYPE torus_gc_max_seconds gauge$/m);
  assert.equal(sample(text, 'torus_storage_blocks_total{storage="current"}'), 16);
});

Deno.test("renderMetrics: no garbage-collection metrics from a process that runs none", () => {
  const text = renderMetrics(sources());
  assert.doesNotMatch(text, /torus_gc_/);
  assert.ok(text.endsWith("\n"));
});
