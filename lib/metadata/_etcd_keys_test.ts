import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  ETCD_KEY_PREFIX_DEFAULT,
  EtcdKeys,
  normalizeKeyPrefix,
  prefixRangeEnd,
} from "./_etcd_keys.ts";

Deno.test("EtcdKeys: the original layout under a slash-terminated prefix", () => {
  const keys = new EtcdKeys(ETCD_KEY_PREFIX_DEFAULT);
  const text = (key: Buffer) => key.toString("utf8");
  assert.equal(text(keys.globalMetadata), "/github.com/coreos/torus/meta/globalmetadata");
  assert.equal(text(keys.volumeMinter), "/github.com/coreos/torus/meta/volumeminter");
  assert.equal(text(keys.ring), "/github.com/coreos/torus/meta/the-one-ring");
  assert.equal(text(keys.node("u-1")), "/github.com/coreos/torus/nodes/u-1");
  assert.equal(text(keys.volumeName("vol")), "/github.com/coreos/torus/volumes/vol");
  assert.equal(text(keys.volume(0x2a)), "/github.com/coreos/torus/volumeid/2a");
  assert.equal(text(keys.volumeMeta(0x2a)), "/github.com/coreos/torus/volumemeta/2a/");
  assert.equal(text(keys.inodeCounter(0x2a)), "/github.com/coreos/torus/volumemeta/2a/inode");
  assert.equal(text(keys.currentINode(2)), "/github.com/coreos/torus/volumemeta/2/blockinode");
  assert.equal(text(keys.lock(2)), "/github.com/coreos/torus/volumemeta/2/blocklock");
  assert.equal(text(keys.snapshot(2, "s")), "/github.com/coreos/torus/volumemeta/2/snapshots/s");
  assert.equal(text(keys.all), "/github.com/coreos/torus/");
});

Deno.test("EtcdKeys: no prefix covers a neighbour's keys", () => {
  const keys = new EtcdKeys("/t");
  const inRange = (prefix: Buffer, key: Buffer) =>
    Buffer.compare(key, prefix) >= 0 && Buffer.compare(key, prefixRangeEnd(prefix)) < 0;
  assert.ok(inRange(keys.volumeMeta(0x2), keys.lock(0x2)));
  for (const neighbour of [0x20, 0x21, 0x2f, 0x200]) {
    assert.equal(inRange(keys.volumeMeta(0x2), keys.lock(neighbour)), false, `0x${neighbour}`);
    assert.equal(inRange(keys.snapshots(0x2), keys.snapshot(neighbour, "s")), false);
  }
  assert.equal(inRange(keys.all, new EtcdKeys("/t2").globalMetadata), false);
  assert.equal(inRange(keys.all, Buffer.from("/t")), false);
  assert.ok(inRange(keys.all, keys.globalMetadata));
});

Deno.test("normalizeKeyPrefix() adds the slash and refuses prefixes covering all of etcd", () => {
  assert.equal(normalizeKeyPrefix("/a/b"), "/a/b/");
  assert.equal(normalizeKeyPrefix("a/"), "a/");
  for (const prefix of ["", "/", "//"]) {
    assert.throws(() => normalizeKeyPrefix(prefix), RangeError, JSON.stringify(prefix));
  }
});

Deno.test("prefixRangeEnd() increments the last byte below 0xff", () => {
  assert.deepEqual([...prefixRangeEnd(Buffer.from("ab/"))], [...Buffer.from("ab0")]);
  assert.deepEqual([...prefixRangeEnd(Buffer.from([1, 0xff, 0xff]))], [2]);
  assert.deepEqual([...prefixRangeEnd(Buffer.from([0xff]))], [0]);
});
