import assert from "node:assert/strict";
import { DownTracker } from "./down_tracker.ts";

const MIN = 60_000;

Deno.test("DownTracker: a member down for the whole delay is the candidate; one that came back is not", () => {
  const tracker = new DownTracker();
  const ring = { members: ["a", "b", "c", "d"], replication: 2 };
  tracker.observe(0, ring.members, new Set(["a", "b", "c"]));
  assert.equal(tracker.candidate(9 * MIN, 10 * MIN, ring), null, "not yet");
  tracker.observe(10 * MIN, ring.members, new Set(["a", "b", "c"]));
  assert.equal(tracker.candidate(10 * MIN, 10 * MIN, ring), "d");
  assert.equal(tracker.downSinceMs("d"), 0);
  // d comes back: forgotten; down again later, the delay starts over.
  tracker.observe(11 * MIN, ring.members, new Set(["a", "b", "c", "d"]));
  assert.equal(tracker.downSinceMs("d"), undefined);
  tracker.observe(12 * MIN, ring.members, new Set(["a", "b", "c"]));
  assert.equal(tracker.candidate(21 * MIN, 10 * MIN, ring), null);
  assert.equal(tracker.candidate(22 * MIN, 10 * MIN, ring), "d");
});

Deno.test("DownTracker: the longest down goes first, one at a time", () => {
  const tracker = new DownTracker();
  const ring = { members: ["a", "b", "c", "d", "e"], replication: 2 };
  tracker.observe(0, ring.members, new Set(["a", "b", "c", "d"])); // e down first
  tracker.observe(MIN, ring.members, new Set(["a", "b", "c"])); // then d
  assert.equal(tracker.candidate(20 * MIN, 10 * MIN, ring), "e");
  // e evicted: no longer a member, no longer tracked.
  const smaller = { members: ["a", "b", "c", "d"], replication: 2 };
  tracker.observe(20 * MIN, smaller.members, new Set(["a", "b", "c"]));
  assert.equal(tracker.downSinceMs("e"), undefined);
  assert.equal(tracker.candidate(20 * MIN, 10 * MIN, smaller), "d");
});

Deno.test("DownTracker: never below the replication factor, never while half the ring is down", () => {
  const tracker = new DownTracker();
  const two = { members: ["a", "b"], replication: 2 };
  tracker.observe(0, two.members, new Set(["a"]));
  assert.equal(tracker.candidate(60 * MIN, MIN, two), null, "nowhere to copy to");
  const four = { members: ["a", "b", "c", "d"], replication: 2 };
  tracker.observe(0, four.members, new Set(["a", "b"]));
  assert.equal(tracker.candidate(60 * MIN, MIN, four), null, "half the ring is down");
  tracker.observe(61 * MIN, four.members, new Set(["a", "b", "c"]));
  assert.equal(tracker.candidate(61 * MIN, MIN, four), "d", "a quarter is down");
  const empty = { members: [], replication: 1 };
  assert.equal(new DownTracker().candidate(0, 0, empty), null);
});
