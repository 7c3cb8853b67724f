import assert from "node:assert/strict";
import { REPLICAS_MAX } from "../constants.ts";
import { AlreadyExistsError, PeerNotFoundError } from "../errors.ts";
import {
  capacityWeights,
  checkPeers,
  checkReplication,
  checkVersion,
  effectiveReplication,
  nextVersion,
  RING_VERSION_MAX,
  unionPeers,
  unionUuids,
  withPeersAdded,
  withPeersRemoved,
} from "./peer_list.ts";

const peer = (uuid: string, totalBlocks = 10) => ({ uuid, totalBlocks });

Deno.test("checkPeers() copies and freezes members, and refuses bad ones", () => {
  const input = [peer("a"), peer("b", 0)];
  const checked = checkPeers(input);
  assert.deepEqual(checked, input);
  assert.notEqual(checked[0], input[0]);
  assert.ok(Object.isFrozen(checked[0]));
  assert.throws(() => checkPeers([peer("")]), RangeError);
  assert.throws(() => checkPeers([peer("a"), peer("a")]), /twice/);
  assert.throws(() => checkPeers([peer("a", -1)]), RangeError);
  assert.throws(() => checkPeers([peer("a", 1.5)]), RangeError);
  assert.throws(() => checkPeers([peer("a", 2 ** 53)]), RangeError);
});

Deno.test("unionUuids() and unionPeers() keep order, left first, each once", () => {
  assert.deepEqual(unionUuids(["b", "a", "b"], ["c", "a", "d"]), ["b", "a", "c", "d"]);
  assert.deepEqual(unionUuids([], ["x"]), ["x"]);
  const merged = unionPeers([peer("a", 1)], [peer("a", 2), peer("b", 3)]);
  assert.deepEqual(merged, [peer("a", 1), peer("b", 3)]);
});

Deno.test("withPeersAdded() appends only new members; nothing new is AlreadyExistsError", () => {
  const current = [peer("a"), peer("b")];
  assert.deepEqual(withPeersAdded(current, [peer("b"), peer("c")]).map((p) => p.uuid), [
    "a",
    "b",
    "c",
  ]);
  assert.throws(() => withPeersAdded(current, [peer("a")]), AlreadyExistsError);
  assert.throws(() => withPeersAdded(current, []), AlreadyExistsError);
});

Deno.test("withPeersRemoved() drops members; nothing removed is PeerNotFoundError", () => {
  const current = [peer("a"), peer("b"), peer("c")];
  assert.deepEqual(withPeersRemoved(current, ["b", "zz"]).map((p) => p.uuid), ["a", "c"]);
  assert.deepEqual(withPeersRemoved(current, ["a", "b", "c"]), []);
  assert.throws(() => withPeersRemoved(current, ["zz"]), PeerNotFoundError);
  assert.throws(() => withPeersRemoved(current, []), PeerNotFoundError);
});

Deno.test("capacityWeights() divides capacities by their gcd", () => {
  assert.deepEqual(capacityWeights([peer("a", 400), peer("b", 600), peer("c", 1000)]), [2, 3, 5]);
  assert.deepEqual(capacityWeights([peer("a", 100 * 2 ** 30), peer("b", 100 * 2 ** 30)]), [1, 1]);
  assert.deepEqual(capacityWeights([peer("a", 7), peer("b", 0)]), [1, 0]);
  assert.deepEqual(capacityWeights([peer("a", 0), peer("b", 0)]), [1, 1]);
  assert.deepEqual(capacityWeights([]), []);
});

Deno.test("replication: 0 means 1, clamped to the member count, bounded by REPLICAS_MAX", () => {
  assert.equal(checkReplication(0), 1);
  assert.equal(checkReplication(3), 3);
  assert.equal(checkReplication(REPLICAS_MAX), REPLICAS_MAX);
  assert.throws(() => checkReplication(REPLICAS_MAX + 1), RangeError);
  assert.throws(() => checkReplication(-1), RangeError);
  assert.throws(() => checkReplication(1.5), RangeError);
  assert.equal(effectiveReplication(2, 1), 1);
  assert.equal(effectiveReplication(0, 5), 1);
  assert.equal(effectiveReplication(3, 5), 3);
  assert.equal(effectiveReplication(3, 0), 0);
});

Deno.test("versions fit a uint32 and the last one cannot change", () => {
  assert.equal(checkVersion(0), 0);
  assert.equal(checkVersion(RING_VERSION_MAX), RING_VERSION_MAX);
  assert.throws(() => checkVersion(RING_VERSION_MAX + 1), RangeError);
  assert.throws(() => checkVersion(-1), RangeError);
  assert.equal(nextVersion(1), 2);
  assert.throws(() => nextVersion(RING_VERSION_MAX), RangeError);
});
