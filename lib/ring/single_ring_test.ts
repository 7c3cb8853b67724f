import assert from "node:assert/strict";
import { RingType } from "./ring.ts";
import { SingleRing } from "./single_ring.ts";
import { assertPermutations, testPeers, testRefs } from "./_test_rings.ts";

Deno.test("SingleRing places every block on its one member, replication clamped to 1", () => {
  const [peer] = testPeers(1);
  const ring = new SingleRing({ version: 1, replication: 3, peers: [peer!] });
  assert.equal(ring.type, RingType.single);
  assert.equal(ring.replication, 3);
  assertPermutations(ring, testRefs(50));
  assert.deepEqual(ring.getPeers(testRefs(1)[0]!), { replication: 1, peers: [peer!.uuid] });
  assert.match(ring.describe(), new RegExp(`^Ring: Single\nVersion: 1\nUUID: ${peer!.uuid}$`));
});

Deno.test("SingleRing needs exactly one peer", () => {
  assert.throws(() => new SingleRing({ version: 1, replication: 1, peers: [] }), /exactly one/);
  assert.throws(
    () => new SingleRing({ version: 1, replication: 1, peers: testPeers(2) }),
    /exactly one/,
  );
});
