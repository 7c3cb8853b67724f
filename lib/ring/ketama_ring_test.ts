import assert from "node:assert/strict";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { AlreadyExistsError, NoPeersError, PeerNotFoundError } from "../errors.ts";
import { KetamaRing } from "./ketama_ring.ts";
import { RingType } from "./ring.ts";
import { assertPermutations, primaryCounts, testPeers, testRefs } from "./_test_rings.ts";

/**
 * Largest deviation of a member's share from its ideal share that the balance
 * tests accept. Ketama gives each member of average weight 120 keys on the
 * continuum, so a share deviates by about 1/sqrt(120) ≈ 9% (one standard
 * deviation); 25% is about 2.7 of them.
 */
const SHARE_DEVIATION_MAX = 0.25;

// Golden placements: a change that re-places stored data fails here. The
// continuum itself is checked against Python hash_ring in _continuum_test.ts.
Deno.test("KetamaRing.getPeers() places these refs exactly where it always has", () => {
  const peers = [
    { uuid: "5b8d2a1e-9c3f-4e7a-8b21-0f6d4c9e3a17", totalBlocks: 1 << 20 },
    { uuid: "a04f7c6b-2e19-4d85-9f3a-6c1b8e2d7f40", totalBlocks: 1 << 20 },
    { uuid: "c9e1b3d7-58a2-4f6c-a0d4-3b7e9f1c2a85", totalBlocks: 2 << 20 },
    { uuid: "e2736f0a-b4c8-4193-8d5e-7a2f0c6b9d31", totalBlocks: 1 << 20 },
  ];
  const ring = new KetamaRing({ version: 1, replication: 2, peers });
  const golden: [BlockRef, string][] = [
    [new BlockRef(1, BlockType.data, 1, 1), "acdb"],
    [new BlockRef(1, BlockType.data, 1, 2), "bcda"],
    [new BlockRef(2, BlockType.data, 17, 1), "adbc"],
    [new BlockRef(2, BlockType.inode, 17, 1), "cabd"],
    [new BlockRef(0xff_ffff_fffe, BlockType.data, 2 ** 40, 123456), "adcb"],
    [new BlockRef(5, BlockType.data, 99, 7), "dcab"],
  ];
  for (const [ref, letters] of golden) {
    const expected = [...letters].map((letter) => peers["abcd".indexOf(letter)]!.uuid);
    assert.deepEqual(ring.getPeers(ref), { replication: 2, peers: expected }, String(ref));
  }
});

Deno.test("KetamaRing permutations hold every member once, owners clamped to the members", () => {
  const refs = testRefs(500);
  for (const [count, replication, owners] of [[1, 2, 1], [3, 0, 1], [4, 3, 3], [2, 8, 2]]) {
    const ring = new KetamaRing({
      version: 1,
      replication: replication!,
      peers: testPeers(count!),
    });
    assertPermutations(ring, refs);
    assert.equal(ring.getPeers(refs[0]!).replication, owners);
  }
  const empty = new KetamaRing({ version: 1, replication: 2, peers: [] });
  assert.throws(() => empty.getPeers(refs[0]!), NoPeersError);
});

Deno.test("KetamaRing does not depend on the stored member order", () => {
  const peers = testPeers(6);
  const refs = testRefs(2000);
  const a = new KetamaRing({ version: 1, replication: 3, peers });
  const b = new KetamaRing({ version: 1, replication: 3, peers: [...peers].reverse() });
  assert.deepEqual(refs.map((ref) => a.getPeers(ref)), refs.map((ref) => b.getPeers(ref)));
});

Deno.test("KetamaRing with equal capacities gives each member its share of 100k blocks, within 25%", () => {
  const cases: [members: number, refs: number][] = [[5, 100_000], [3, 30_000], [8, 30_000]];
  for (const [count, refCount] of cases) {
    const ring = new KetamaRing({ version: 1, replication: 1, peers: testPeers(count) });
    const ideal = refCount / count;
    for (const [uuid, blocks] of primaryCounts(ring, testRefs(refCount))) {
      const deviation = Math.abs(blocks - ideal) / ideal;
      assert.ok(deviation < SHARE_DEVIATION_MAX, `${count} members: ${uuid} has ${blocks}`);
    }
  }
});

Deno.test("KetamaRing shares follow capacity (1:2:3), and a tiny peer gets nothing", () => {
  const refs = testRefs(60_000);
  for (const seed of [1, 2, 3]) {
    const peers = testPeers(3, seed).map((peer, i) => ({ ...peer, totalBlocks: (i + 1) * 5000 }));
    const ring = new KetamaRing({ version: 1, replication: 1, peers });
    const counts = primaryCounts(ring, refs);
    peers.forEach((peer, i) => {
      const ideal = (refs.length * (i + 1)) / 6;
      const deviation = Math.abs(counts.get(peer.uuid)! - ideal) / ideal;
      assert.ok(deviation < SHARE_DEVIATION_MAX, `seed ${seed}: ${peer.uuid} weight ${i + 1}`);
    });
  }
  // Weights 1000:1000:1 give the tiny peer no point: never an owner, always last.
  const [a, b, tiny] = testPeers(3);
  const ring = new KetamaRing({
    version: 1,
    replication: 2,
    peers: [{ ...tiny!, totalBlocks: 1 }, { ...a!, totalBlocks: 1000 }, {
      ...b!,
      totalBlocks: 1000,
    }],
  });
  for (const ref of testRefs(1000)) assert.equal(ring.getPeers(ref).peers[2], tiny!.uuid);
});

Deno.test("KetamaRing.addPeers() moves only the blocks the new member takes, about 1/(N+1)", () => {
  const refs = testRefs(30_000);
  const peers = testPeers(6);
  const before = new KetamaRing({ version: 1, replication: 2, peers: peers.slice(0, 5) });
  const after = before.addPeers([peers[5]!]);
  const newcomer = peers[5]!.uuid;
  let movedPrimary = 0;
  for (const ref of refs) {
    const old = before.getPeers(ref).peers;
    const next = after.getPeers(ref).peers;
    // Equal weights keep every old point: the walk only gains the newcomer.
    assert.deepEqual(next.filter((uuid) => uuid !== newcomer), old, String(ref));
    if (next[0] !== old[0]) movedPrimary++;
  }
  const ideal = refs.length / 6;
  assert.ok(Math.abs(movedPrimary - ideal) / ideal < SHARE_DEVIATION_MAX, `moved ${movedPrimary}`);
});

Deno.test("KetamaRing.removePeers() moves only the removed member's blocks", () => {
  const refs = testRefs(30_000);
  const peers = testPeers(5);
  const before = new KetamaRing({ version: 1, replication: 2, peers });
  const gone = peers[2]!.uuid;
  const after = before.removePeers([gone]);
  let changed = 0;
  for (const ref of refs) {
    const old = before.getPeers(ref).peers;
    const next = after.getPeers(ref).peers;
    // Equal weights keep every other point: the walk only loses the removed member.
    assert.deepEqual(next, old.filter((uuid) => uuid !== gone), String(ref));
    const oldOwners = old.slice(0, 2);
    if (oldOwners.includes(gone)) changed++;
    else assert.deepEqual(next.slice(0, 2), oldOwners, "a block the removed member did not own");
  }
  const ideal = (refs.length * 2) / 5;
  assert.ok(Math.abs(changed - ideal) / ideal < SHARE_DEVIATION_MAX, `changed ${changed}`);
});

Deno.test("KetamaRing mutations return a new ring at version + 1", () => {
  const peers = testPeers(4);
  const ring = new KetamaRing({ version: 1, replication: 2, peers: peers.slice(0, 3) });
  const grown = ring.addPeers([peers[3]!]);
  assert.equal(grown.type, RingType.ketama);
  assert.equal(grown.version, 2);
  assert.deepEqual(grown.members(), peers);
  const shrunk = grown.removePeers([peers[0]!.uuid]);
  assert.equal(shrunk.version, 3);
  assert.deepEqual(shrunk.members(), peers.slice(1));
  const refs = testRefs(300);
  const wider = shrunk.changeReplication(3);
  assert.equal(wider.version, 4);
  assert.deepEqual(
    refs.map((ref) => wider.getPeers(ref).peers),
    refs.map((ref) => shrunk.getPeers(ref).peers),
  );
  assert.equal(wider.getPeers(refs[0]!).replication, 3);
  assert.throws(() => ring.addPeers(peers.slice(0, 2)), AlreadyExistsError);
  assert.throws(() => ring.removePeers([peers[3]!.uuid]), PeerNotFoundError);
  assert.throws(() => ring.changeReplication(-1), RangeError);
  assert.throws(() => ring.addPeers([{ uuid: "", totalBlocks: 1 }]), RangeError);
});
