import assert from "node:assert/strict";
import { NoPeersError } from "../errors.ts";
import { EmptyRing } from "./empty_ring.ts";
import { KetamaRing } from "./ketama_ring.ts";
import { ModRing } from "./mod_ring.ts";
import { RingType } from "./ring.ts";
import { UnionRing } from "./union_ring.ts";
import { assertPermutations, testPeers, testRefs } from "./_test_rings.ts";

Deno.test("UnionRing places by the old ring first, then the new ring's other members", () => {
  const peers = testPeers(5);
  const before = new KetamaRing({ version: 4, replication: 2, peers: peers.slice(0, 3) });
  const after = before.removePeers([peers[0]!.uuid]).addPeers(peers.slice(3));
  const union = new UnionRing(before, after);
  assert.equal(union.type, RingType.union);
  assert.equal(union.version, 6);
  assert.equal(union.replication, 2);
  assert.deepEqual(union.members(), [...peers.slice(0, 3), ...peers.slice(3)]);
  for (const ref of testRefs(300)) {
    const old = before.getPeers(ref).peers;
    const fresh = after.getPeers(ref).peers.filter((uuid) => !old.includes(uuid));
    assert.deepEqual(union.getPeers(ref), { replication: 2, peers: [...old, ...fresh] });
  }
  assertPermutations(union, testRefs(300));
  assert.match(union.describe(), /^Ring: Union\nVersion: 6\nOld:\n\tRing: Ketama\n/);
});

Deno.test("UnionRing with an empty side places by the other; both empty is NoPeersError", () => {
  const peers = testPeers(2);
  const empty = new EmptyRing({ version: 1, replication: 1 });
  const mod = new ModRing({ version: 2, replication: 2, peers });
  const ref = testRefs(1)[0]!;
  assert.deepEqual(new UnionRing(empty, mod).getPeers(ref), mod.getPeers(ref));
  assert.deepEqual(new UnionRing(mod, empty).getPeers(ref), mod.getPeers(ref));
  assert.throws(() => new UnionRing(empty, empty).getPeers(ref), NoPeersError);
});
