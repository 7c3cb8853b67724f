import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { INodeRef } from "../core/block_ref.ts";
import { RingSchema } from "../models/torus_pb.ts";
import {
  decodeINodeRef,
  decodePeer,
  decodeSnapshot,
  decodeU64,
  decodeVolume,
  encodeINodeRef,
  encodePeer,
  encodeSnapshot,
  encodeU64,
  encodeVolume,
  formatRfc3339Nano,
  ringVersionOf,
} from "./_etcd_codec.ts";

Deno.test("_etcd_codec: counters are u64 little endian", () => {
  assert.deepEqual([...encodeU64(0x0102)], [2, 1, 0, 0, 0, 0, 0, 0]);
  assert.equal(decodeU64("x", encodeU64(2 ** 40 + 5)), 2 ** 40 + 5);
  assert.throws(() => decodeU64("x", new Uint8Array(7)), SyntaxError);
  assert.throws(() => decodeU64("x", new Uint8Array(8).fill(0xff)), SyntaxError);
});

Deno.test("_etcd_codec: volumes, peers, INode refs and snapshots round-trip", () => {
  const volume = { name: "v\u00e9", id: 0x2a, type: "block" as const, sizeBytes: 2 ** 50 };
  assert.deepEqual(decodeVolume(encodeVolume(volume)), volume);
  const peer = {
    uuid: "u",
    address: "tdp://127.0.0.1:4000",
    lastSeenMs: 1_700_000_000_123,
    totalBlocks: 10,
    usedBlocks: 3,
    rebalancing: true,
    lastRebalanceFinishMs: 1_699_999_999_999,
    lastRebalanceBlocks: 7,
    protocolVersion: 1,
  };
  assert.deepEqual(decodePeer(encodePeer(peer, 1_700_000_000_456)), {
    ...peer,
    lastSeenMs: 1_700_000_000_456,
  });
  const ref = new INodeRef(0x2a, 9);
  assert.ok(decodeINodeRef("x", 0x2a, encodeINodeRef(ref)).equals(ref));
  assert.throws(() => decodeINodeRef("x", 0x2b, encodeINodeRef(ref)), SyntaxError);
  const snapshot = { name: "snap", createdMs: 1_700_000_000_500, inode: ref };
  const json = JSON.parse(new TextDecoder().decode(encodeSnapshot(snapshot)));
  assert.deepEqual(json, {
    Name: "snap",
    When: "2023-11-14T22:13:20.5Z",
    INodeRef: "KgAAAAAAAAAJAAAAAAAAAA==",
  });
  assert.deepEqual(decodeSnapshot(0x2a, encodeSnapshot(snapshot)), snapshot);
  assert.throws(() => decodeSnapshot(0x2a, new TextEncoder().encode("{}")), SyntaxError);
  assert.throws(() => decodeVolume(new Uint8Array([0xff])), SyntaxError);
});

Deno.test("_etcd_codec: times are formatted like Go's RFC3339Nano", () => {
  assert.equal(formatRfc3339Nano(0), "1970-01-01T00:00:00Z");
  assert.equal(formatRfc3339Nano(1_500), "1970-01-01T00:00:01.5Z");
  assert.equal(formatRfc3339Nano(1_012), "1970-01-01T00:00:01.012Z");
  assert.equal(formatRfc3339Nano(10_000), "1970-01-01T00:00:10Z");
});

Deno.test("_etcd_codec: the ring version comes from the models.Ring bytes", () => {
  const bytes = toBinary(RingSchema, create(RingSchema, { type: 4, version: 7 }));
  assert.equal(ringVersionOf(bytes), 7);
  assert.throws(() => ringVersionOf(new Uint8Array([2, 0xff, 0, 7])), SyntaxError);
});
