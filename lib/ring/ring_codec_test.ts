import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { PeerInfoSchema, RingSchema } from "../models/torus_pb.ts";
import { initialRingBytes } from "../node/local_node.ts";
import { EmptyRing } from "./empty_ring.ts";
import { KetamaRing } from "./ketama_ring.ts";
import { ModRing } from "./mod_ring.ts";
import { type Ring, RingType } from "./ring.ts";
import {
  createRing,
  isMutableRing,
  parseRingType,
  RING_NESTING_DEPTH_MAX,
  ringTypeName,
  unmarshalRing,
} from "./ring_codec.ts";
import { SingleRing } from "./single_ring.ts";
import { UnionRing } from "./union_ring.ts";
import { testPeers, testRefs } from "./_test_rings.ts";

function assertSameRing(actual: Ring, expected: Ring): void {
  assert.equal(actual.type, expected.type);
  assert.equal(actual.constructor, expected.constructor);
  assert.equal(actual.version, expected.version);
  assert.equal(actual.replication, expected.replication);
  assert.deepEqual(actual.members(), expected.members());
  assert.equal(actual.describe(), expected.describe());
  assert.deepEqual(actual.marshal(), expected.marshal());
  if (expected.members().length > 0) {
    for (const ref of testRefs(50)) assert.deepEqual(actual.getPeers(ref), expected.getPeers(ref));
  }
}

function ringBytes(fields: Parameters<typeof create<typeof RingSchema>>[1]): Uint8Array {
  return toBinary(RingSchema, create(RingSchema, fields));
}

Deno.test("unmarshalRing() round-trips every ring type", () => {
  const peers = testPeers(4);
  const ketama = new KetamaRing({ version: 9, replication: 3, peers });
  const rings: Ring[] = [
    new EmptyRing({ version: 1, replication: 2 }),
    new SingleRing({ version: 2, replication: 1, peers: peers.slice(0, 1) }),
    new ModRing({ version: 3, replication: 2, peers }),
    ketama,
    new KetamaRing({ version: 1, replication: 2, peers: [] }),
    new UnionRing(ketama, ketama.addPeers(testPeers(1, 99))),
    new UnionRing(new EmptyRing({ version: 1, replication: 1 }), ketama),
  ];
  for (const ring of rings) assertSameRing(unmarshalRing(ring.marshal()), ring);
});

Deno.test("unmarshalRing() reads the ring a data directory starts with", () => {
  const ring = unmarshalRing(initialRingBytes());
  assert.ok(ring instanceof EmptyRing);
  assert.equal(ring.version, 1);
  assert.equal(ring.replication, 1);
});

Deno.test("unmarshalRing() reads the original's field layout", () => {
  const bytes = ringBytes({
    type: RingType.ketama,
    version: 5,
    replicationFactor: 2,
    peers: [
      create(PeerInfoSchema, { uuid: "a", address: "http://10.0.0.1:40000", totalBlocks: 300n }),
      create(PeerInfoSchema, { uuid: "b", totalBlocks: 600n, usedBlocks: 12n }),
    ],
  });
  const ring = unmarshalRing(bytes);
  assert.ok(ring instanceof KetamaRing);
  assert.deepEqual(ring.members(), [{ uuid: "a", totalBlocks: 300 }, {
    uuid: "b",
    totalBlocks: 600,
  }]);
  assert.equal(ring.version, 5);
  // Replication 0 in a stored mod or ketama ring means 1, as in the original.
  const zero = unmarshalRing(ringBytes({ type: RingType.mod, version: 1, replicationFactor: 0 }));
  assert.equal(zero.replication, 1);
});

Deno.test("unmarshalRing() refuses corrupt bytes with a SyntaxError saying what is wrong", () => {
  const bad = (bytes: Uint8Array, pattern: RegExp) =>
    assert.throws(
      () => unmarshalRing(bytes),
      (error: Error) => error instanceof SyntaxError && pattern.test(error.message),
    );
  const peer = (uuid: string, totalBlocks = 1n) => create(PeerInfoSchema, { uuid, totalBlocks });
  bad(new Uint8Array([0x0a, 0xff, 0xff]), /^Cannot decode ring: /);
  bad(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), /ring/);
  bad(ringBytes({ type: 7, version: 1 }), /unknown type 7/);
  bad(ringBytes({ type: RingType.single, version: 1, peers: [] }), /single ring.*exactly one/);
  bad(ringBytes({ type: RingType.empty, version: 1, peers: [peer("a")] }), /empty ring/);
  bad(ringBytes({ type: RingType.mod, version: 1, peers: [peer("a"), peer("a")] }), /twice/);
  bad(ringBytes({ type: RingType.ketama, version: 1, peers: [peer("")] }), /uuid/);
  bad(ringBytes({ type: RingType.ketama, version: 1, peers: [peer("a", 2n ** 60n)] }), /capacity/);
  bad(ringBytes({ type: RingType.ketama, version: 1, replicationFactor: 100 }), /replication/);
  bad(ringBytes({ type: RingType.union, version: 1 }), /"old" is missing/);
  const inner = new EmptyRing({ version: 1, replication: 1 }).marshal();
  bad(
    ringBytes({ type: RingType.union, version: 2, attrs: { old: inner, new: inner } }),
    /version/,
  );
  bad(
    ringBytes({
      type: RingType.union,
      version: 1,
      attrs: { old: inner, new: Uint8Array.of(0x0a) },
    }),
    /ring/,
  );
});

Deno.test("unmarshalRing() refuses union rings nested too deep", () => {
  let bytes = new EmptyRing({ version: 1, replication: 1 }).marshal();
  for (let depth = 0; depth < RING_NESTING_DEPTH_MAX; depth++) {
    bytes = ringBytes({ type: RingType.union, version: 1, attrs: { old: bytes, new: bytes } });
  }
  assert.ok(unmarshalRing(bytes) instanceof UnionRing);
  bytes = ringBytes({ type: RingType.union, version: 1, attrs: { old: bytes, new: bytes } });
  assert.throws(() => unmarshalRing(bytes), /nested deeper/);
});

Deno.test("createRing() builds each type from its parts, and refuses what does not fit", () => {
  const peers = testPeers(3);
  const options = { version: 1, replication: 2, peers };
  assert.ok(createRing(RingType.mod, options) instanceof ModRing);
  assert.ok(createRing(RingType.ketama, options) instanceof KetamaRing);
  assert.ok(
    createRing(RingType.single, { ...options, peers: peers.slice(0, 1) }) instanceof SingleRing,
  );
  assert.ok(createRing(RingType.empty, { ...options, peers: [] }) instanceof EmptyRing);
  assert.throws(() => createRing(RingType.empty, options), RangeError);
  assert.throws(() => createRing(RingType.single, options), RangeError);
  assert.throws(() => createRing(RingType.union, options), /two rings|old and a new/);
  assert.throws(() => createRing(9 as RingType, options), RangeError);
  assert.ok(isMutableRing(createRing(RingType.ketama, options)));
  assert.ok(isMutableRing(createRing(RingType.mod, options)));
  assert.ok(!isMutableRing(createRing(RingType.empty, { ...options, peers: [] })));
});

Deno.test("parseRingType() and ringTypeName() use the original's names and numbers", () => {
  const names = ["empty", "single", "mod", "union", "ketama"];
  names.forEach((name, number) => {
    assert.equal(parseRingType(name), number);
    assert.equal(ringTypeName(number as RingType), name);
  });
  assert.equal(parseRingType(" KETAMA "), RingType.ketama);
  assert.throws(() => parseRingType("chord"), SyntaxError);
});
