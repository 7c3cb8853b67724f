import assert from "node:assert/strict";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { NoPeersError } from "../errors.ts";
import { EmptyRing } from "./empty_ring.ts";
import { RingType } from "./ring.ts";

Deno.test("EmptyRing.getPeers() throws NoPeersError and names the fix", () => {
  const ring = new EmptyRing({ version: 3, replication: 2 });
  assert.equal(ring.type, RingType.empty);
  assert.deepEqual(ring.members(), []);
  assert.throws(
    () => ring.getPeers(new BlockRef(1, BlockType.data, 1, 1)),
    (error: Error) => error instanceof NoPeersError && /empty.*add peers/.test(error.message),
  );
});

Deno.test("EmptyRing keeps version and replication as given", () => {
  const ring = new EmptyRing({ version: 1, replication: 0 });
  assert.equal(ring.version, 1);
  assert.equal(ring.replication, 0);
  assert.equal(ring.describe(), "Ring: Empty\nVersion: 1");
  assert.throws(() => new EmptyRing({ version: -1, replication: 1 }), RangeError);
  assert.throws(() => new EmptyRing({ version: 1, replication: 99 }), RangeError);
});
