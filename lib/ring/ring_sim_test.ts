import assert from "node:assert/strict";
import { Prng } from "../prng.ts";
import { RingType } from "./ring.ts";
import {
  RING_SIM_BLOCKS_MAX,
  RING_SIM_FILE_BLOCKS_MAX,
  RING_SIM_VOLUME_ID,
  type RingSimOptions,
  simulateRingChange,
  syntheticFile,
} from "./ring_sim.ts";

const BLOCK_SIZE_BYTES = 4096;
const BLOCKS = 20_000;

function options(overrides: Partial<RingSimOptions> = {}): RingSimOptions {
  return {
    ringType: RingType.ketama,
    replication: 2,
    replicationEnd: 0,
    nodes: 4,
    delta: 1,
    blockSizeBytes: BLOCK_SIZE_BYTES,
    totalDataBytes: BLOCKS * BLOCK_SIZE_BYTES,
    rewriteEdgePercent: 40,
    seed: 1,
    ...overrides,
  };
}

Deno.test("simulateRingChange() adding a ketama node sends it its share and nothing else", () => {
  const result = simulateRingChange(options());
  assert.equal(result.uniqueBlocks, BLOCKS);
  assert.equal(result.before.totalBlocks, 2 * BLOCKS);
  assert.equal(result.after.totalBlocks, 2 * BLOCKS);
  assert.equal(result.blocksKept + result.blocksSent, 2 * BLOCKS);
  assert.equal(result.before.blocksByNode.size, 4);
  assert.equal(result.after.blocksByNode.size, 5);
  assert.equal(result.after.meanBlocks, (2 * BLOCKS) / 5);
  // Only the new node receives: every block it now owns was sent to it.
  const newcomer = [...result.after.blocksByNode.keys()].find((uuid) =>
    !result.before.blocksByNode.has(uuid)
  )!;
  assert.equal(result.blocksSent, result.after.blocksByNode.get(newcomer));
  assert.ok(result.percentSent > 15 && result.percentSent < 27, `${result.percentSent}%`);
  assert.equal(result.trafficBytes, result.blocksSent * BLOCK_SIZE_BYTES);
  assert.equal(result.idealTrafficBytes, (2 * BLOCKS * BLOCK_SIZE_BYTES) / 5);
  assert.equal(result.fromRing.version, 1);
  assert.equal(result.toRing.version, 2);
});

Deno.test("simulateRingChange() with a mod ring sends most blocks for the same change", () => {
  const result = simulateRingChange(options({ ringType: RingType.mod }));
  assert.ok(result.percentSent > 50, `${result.percentSent}%`);
  // ...yet balances better than ketama.
  assert.ok(result.after.stddevBlocks < result.after.meanBlocks * 0.05);
});

Deno.test("simulateRingChange() removing a ketama node re-sends exactly what it held", () => {
  const result = simulateRingChange(options({ nodes: 5, delta: -1 }));
  assert.equal(result.after.blocksByNode.size, 4);
  const removed = [...result.before.blocksByNode.keys()].find((uuid) =>
    !result.after.blocksByNode.has(uuid)
  )!;
  assert.equal(result.blocksSent, result.before.blocksByNode.get(removed));
  // The ideal is the removed node's even share: 1/5, not 1/4.
  assert.equal(result.idealTrafficBytes, (2 * BLOCKS * BLOCK_SIZE_BYTES) / 5);
});

Deno.test("simulateRingChange() raising replication sends one new copy of every block", () => {
  const result = simulateRingChange(options({ delta: 0, replication: 1, replicationEnd: 2 }));
  assert.equal(result.blocksKept, BLOCKS);
  assert.equal(result.blocksSent, BLOCKS);
  assert.equal(result.toRing.replication, 2);
  assert.equal(result.idealTrafficBytes, 0);
});

Deno.test("simulateRingChange() makes a fresh ring at version 2 for types that cannot change", () => {
  const result = simulateRingChange(
    options({ ringType: RingType.single, nodes: 1, delta: 0, replication: 1, replicationEnd: 3 }),
  );
  assert.equal(result.toRing.version, 2);
  assert.equal(result.toRing.replication, 3);
  assert.equal(result.blocksSent, 0);
  assert.throws(() => simulateRingChange(options({ ringType: RingType.single })), /single ring/);
  assert.throws(() => simulateRingChange(options({ ringType: RingType.empty })), /empty ring/);
});

Deno.test("simulateRingChange() is deterministic for a seed, and the seed matters", () => {
  const strip = ({ fromRing, toRing, ...rest }: ReturnType<typeof simulateRingChange>) => ({
    ...rest,
    members: [fromRing.members(), toRing.members()],
  });
  const a = strip(simulateRingChange(options({ totalDataBytes: 3000 * BLOCK_SIZE_BYTES })));
  const b = strip(simulateRingChange(options({ totalDataBytes: 3000 * BLOCK_SIZE_BYTES })));
  assert.deepEqual(a, b);
  const c = strip(
    simulateRingChange(options({ totalDataBytes: 3000 * BLOCK_SIZE_BYTES, seed: 2 })),
  );
  assert.notDeepEqual(c.members, a.members);
  assert.notEqual(c.files, a.files);
});

Deno.test("simulateRingChange() --rewrite-edge is the percentage of rewritten files", () => {
  const none = simulateRingChange(options({ rewriteEdgePercent: 0, delta: 0 }));
  assert.equal(none.rewrittenFiles, 0);
  const all = simulateRingChange(options({ rewriteEdgePercent: 100, delta: 0 }));
  assert.equal(all.rewrittenFiles, all.files);
  assert.ok(all.files >= BLOCKS / RING_SIM_FILE_BLOCKS_MAX);
});

Deno.test("simulateRingChange() refuses options out of range, naming the limit", () => {
  const bad = (overrides: Partial<RingSimOptions>, pattern: RegExp) =>
    assert.throws(
      () => simulateRingChange(options(overrides)),
      (error: Error) => error instanceof RangeError && pattern.test(error.message),
    );
  bad({ nodes: 0 }, /--nodes 0/);
  bad({ nodes: 3, delta: -3 }, /--delta -3: expected an integer from -2/);
  bad({ replication: 9 }, /--rep 9/);
  bad({ rewriteEdgePercent: 101 }, /--rewrite-edge/);
  bad({ totalDataBytes: 100 }, /--total-data/);
  bad({ blockSizeBytes: 1, totalDataBytes: RING_SIM_BLOCKS_MAX + 1 }, /at most/);
  bad({ seed: -1 }, /--seed/);
});

Deno.test("syntheticFile() writes linearly, or rewrites stretches under new INodes", () => {
  const prng = new Prng(3);
  const linear = syntheticFile(prng, { inode: 10, blocks: 5, rewritten: false });
  assert.deepEqual(linear.refs.map((ref) => [ref.volume, ref.inode, ref.index]), [
    [1, 10, 1],
    [1, 10, 2],
    [1, 10, 3],
    [1, 10, 4],
    [1, 10, 5],
  ]);
  assert.equal(linear.nextInode, 11);
  let rewrites = 0;
  for (let i = 0; i < 20; i++) {
    const file = syntheticFile(prng, { inode: 100, blocks: 500, rewritten: true });
    assert.equal(file.refs.length, 500);
    assert.equal(new Set(file.refs.map((ref) => ref.key())).size, 500, "live refs are distinct");
    for (const ref of file.refs) {
      assert.equal(ref.volume, RING_SIM_VOLUME_ID);
      assert.ok(ref.inode >= 100 && ref.inode < file.nextInode);
    }
    if (new Set(file.refs.map((ref) => ref.inode)).size > 1) rewrites++;
  }
  assert.ok(rewrites > 10, "most rewritten files mix INodes");
});
