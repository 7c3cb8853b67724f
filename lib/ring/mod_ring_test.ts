import assert from "node:assert/strict";
import { crc32 } from "../core/crc32.ts";
import { AlreadyExistsError, NoPeersError, PeerNotFoundError } from "../errors.ts";
import { ModRing } from "./mod_ring.ts";
import { RingType } from "./ring.ts";
import { assertPermutations, ownersOf, primaryCounts, testPeers, testRefs } from "./_test_rings.ts";

Deno.test("ModRing.getPeers() rotates the uuid-sorted members by crc32(ref) mod members", () => {
  const peers = testPeers(5);
  const ring = new ModRing({ version: 1, replication: 2, peers });
  const sorted = peers.map((peer) => peer.uuid).sort();
  for (const ref of testRefs(200)) {
    const start = crc32(ref.toBytes()) % sorted.length;
    const expected = [...sorted.slice(start), ...sorted.slice(0, start)];
    assert.deepEqual(ring.getPeers(ref), { replication: 2, peers: expected });
  }
});

Deno.test("ModRing permutations hold every member once, owners clamped to the members", () => {
  const refs = testRefs(500);
  for (const [count, replication, owners] of [[1, 2, 1], [3, 0, 1], [4, 3, 3], [2, 8, 2]]) {
    const ring = new ModRing({ version: 1, replication: replication!, peers: testPeers(count!) });
    assertPermutations(ring, refs);
    assert.equal(ring.getPeers(refs[0]!).replication, owners);
  }
  const empty = new ModRing({ version: 1, replication: 2, peers: [] });
  assert.throws(() => empty.getPeers(refs[0]!), NoPeersError);
});

Deno.test("ModRing does not depend on the stored member order", () => {
  const peers = testPeers(6);
  const refs = testRefs(300);
  const a = new ModRing({ version: 1, replication: 2, peers });
  const b = new ModRing({ version: 1, replication: 2, peers: [...peers].reverse() });
  assert.deepEqual(ownersOf(a, refs), ownersOf(b, refs));
  assert.deepEqual(b.members(), [...peers].reverse());
});

Deno.test("ModRing spreads blocks evenly but moves most of them when a member joins", () => {
  const refs = testRefs(20_000);
  const peers = testPeers(6);
  const before = new ModRing({ version: 1, replication: 1, peers: peers.slice(0, 5) });
  const ideal = refs.length / 5;
  for (const count of primaryCounts(before, refs).values()) {
    assert.ok(Math.abs(count - ideal) < ideal * 0.05, `${count} vs ${ideal}`);
  }
  const after = before.addPeers([peers[5]!]);
  const moved = refs.filter((ref) => before.getPeers(ref).peers[0] !== after.getPeers(ref).peers[0])
    .length;
  // A consistent ring would move 1/6; mod moves about 5/6.
  assert.ok(moved / refs.length > 0.7, `moved ${moved}`);
});

Deno.test("ModRing mutations return a new ring at version + 1", () => {
  const peers = testPeers(4);
  const ring = new ModRing({ version: 7, replication: 2, peers: peers.slice(0, 3) });
  const grown = ring.addPeers([peers[3]!, peers[0]!]);
  assert.equal(grown.version, 8);
  assert.equal(grown.type, RingType.mod);
  assert.deepEqual(grown.members(), peers);
  assert.equal(ring.members().length, 3, "the original ring is unchanged");
  const shrunk = grown.removePeers([peers[1]!.uuid, "not-a-member"]);
  assert.equal(shrunk.version, 9);
  assert.deepEqual(shrunk.members(), [peers[0], peers[2], peers[3]]);
  const wider = shrunk.changeReplication(3);
  assert.equal(wider.version, 10);
  assert.equal(wider.replication, 3);
  assert.equal(shrunk.changeReplication(0).replication, 1);
  assert.throws(() => ring.addPeers([peers[0]!]), AlreadyExistsError);
  assert.throws(() => ring.removePeers(["not-a-member"]), PeerNotFoundError);
  assert.throws(() => ring.changeReplication(99), RangeError);
});
