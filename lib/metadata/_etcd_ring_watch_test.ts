import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { Buffer } from "node:buffer";
import { Etcd3 } from "etcd3";
import { ManualClock } from "../clock.ts";
import { MetadataUnavailableError } from "../errors.ts";
import { RingSchema } from "../models/torus_pb.ts";
import type { RingRecord } from "./metadata_service.ts";
import { startEtcd } from "./_etcd_server.ts";
import { EtcdMetadata } from "./etcd_metadata.ts";

const GLOBAL = { blockSizeBytes: 4096, defaultBlockSpec: "crc,base" };
/** Longest a test waits for etcd to serve again after a restart, in milliseconds. */
const RECOVERY_TIMEOUT_MS = 15_000;

function ring(version: number): RingRecord {
  return { version, bytes: toBinary(RingSchema, create(RingSchema, { type: 4, version })) };
}

/** Retries `call` while it fails with MetadataUnavailableError, up to `timeoutMs`. */
async function eventually<T>(call: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadlineMs = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof MetadataUnavailableError) || performance.now() > deadlineMs) {
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

Deno.test("RingWatch: a watch open across an etcd restart delivers later rings; calls in the outage fail clearly", async () => {
  await using etcd = await startEtcd();
  const options = { endpoints: etcd.endpoints, clock: new ManualClock(0), keyPrefix: "/restart" };
  const watcher = await EtcdMetadata.open({ ...options, uuid: "watcher" });
  const writer = await EtcdMetadata.open({ ...options, uuid: "writer" });
  try {
    await writer.initialize(GLOBAL, ring(1));
    const seen: number[] = [];
    watcher.watchRing((next) => seen.push(next.version));
    await writer.setRing(ring(2));
    await watcher.syncRingWatchers();
    assert.deepEqual(seen, [2]);

    await etcd.kill();
    const outage: [string, () => Promise<unknown>][] = [
      ["getRing", () => writer.getRing()],
      ["setRing", () => writer.setRing(ring(3))],
      ["listVolumes", () => watcher.listVolumes()],
      ["grantLease", () => watcher.grantLease(1_000)],
      ["syncRingWatchers", () => watcher.syncRingWatchers()],
    ];
    for (const [name, call] of outage) {
      const startMs = performance.now();
      await assert.rejects(call(), (error: unknown) => {
        assert.ok(error instanceof MetadataUnavailableError, `${name}: ${error}`);
        assert.match(
          error.message,
          /^Cannot .+: etcd at http:\/\/127\.0\.0\.1:\d+ is unreachable: /,
        );
        assert.ok(error.message.includes(etcd.endpoint), error.message);
        assert.ok(!error.message.includes("\n"), "one line");
        return true;
      });
      assert.ok(performance.now() - startMs < 2_000, `${name} fails fast`);
    }

    await etcd.restart();
    assert.deepEqual(await eventually(() => writer.getRing(), RECOVERY_TIMEOUT_MS), ring(2));
    // Most likely before the watch reconnects (it backs off): etcd replays them.
    for (let version = 3; version <= 5; version++) await writer.setRing(ring(version));
    await eventually(() => watcher.syncRingWatchers(), RECOVERY_TIMEOUT_MS);
    assert.deepEqual(seen, [2, 3, 4, 5], "the watch resumed and delivered every later ring");
    await writer.setRing(ring(6));
    await watcher.syncRingWatchers();
    assert.deepEqual(seen, [2, 3, 4, 5, 6]);
    assert.equal((await watcher.createVolume("after", 4096)).id, 1, "calls succeed again");
  } finally {
    await watcher.close();
    await writer.close();
  }
});

Deno.test("RingWatch: rings stored while the watch connects are delivered, none twice", async () => {
  await using etcd = await startEtcd();
  const options = { endpoints: etcd.endpoints, clock: new ManualClock(0), keyPrefix: "/connect" };
  const watcher = await EtcdMetadata.open(options);
  const writer = await EtcdMetadata.open(options);
  try {
    await writer.initialize(GLOBAL, ring(1));
    assert.equal((await watcher.getRing()).version, 1);
    const seen: number[] = [];
    const late: number[] = [];
    watcher.watchRing((next) => seen.push(next.version));
    // Stored before the watch is even connected: etcd replays them.
    for (let version = 2; version <= 6; version++) await writer.setRing(ring(version));
    await watcher.syncRingWatchers();
    assert.deepEqual(seen, [2, 3, 4, 5, 6]);
    watcher.watchRing((next) => late.push(next.version));
    await watcher.syncRingWatchers();
    assert.deepEqual(late, [], "a later subscriber starts from the newest ring observed");
    await watcher.setRing(ring(7));
    await writer.setRing(ring(8));
    await watcher.syncRingWatchers();
    assert.deepEqual(seen, [2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(late, [7, 8]);
  } finally {
    await watcher.close();
    await writer.close();
  }
});

Deno.test("RingWatch: an unreadable ring is skipped and the next good one delivered", async () => {
  await using etcd = await startEtcd();
  const options = { endpoints: etcd.endpoints, clock: new ManualClock(0), keyPrefix: "/corrupt" };
  const logged: string[] = [];
  const metadata = await EtcdMetadata.open({
    ...options,
    logger: { log: (level, message) => logged.push(`${level} ${message}`) },
  });
  const raw = new Etcd3({ hosts: etcd.endpoints });
  try {
    await metadata.initialize(GLOBAL, ring(1));
    const seen: number[] = [];
    metadata.watchRing((next) => seen.push(next.version));
    await metadata.syncRingWatchers();
    await raw.put("/corrupt/meta/the-one-ring").value(Buffer.from([0xff, 0xff]));
    await metadata.syncRingWatchers();
    assert.deepEqual(seen, []);
    assert.ok(
      logged.some((line) => line.startsWith("error ignoring an unreadable ring")),
      logged.join(),
    );
    await assert.rejects(metadata.getRing(), SyntaxError);
    await raw.put("/corrupt/meta/the-one-ring").value(Buffer.from(ring(5).bytes));
    await metadata.syncRingWatchers();
    assert.deepEqual(seen, [5]);
  } finally {
    raw.close();
    await metadata.close();
  }
});

Deno.test("RingWatch: a watch whose history was compacted away restarts and delivers the newest ring", async () => {
  await using etcd = await startEtcd();
  const options = { endpoints: etcd.endpoints, clock: new ManualClock(0), keyPrefix: "/compact" };
  const logged: string[] = [];
  const watcher = await EtcdMetadata.open({
    ...options,
    logger: { log: (level, message) => logged.push(`${level} ${message}`) },
  });
  const writer = await EtcdMetadata.open(options);
  const raw = new Etcd3({ hosts: etcd.endpoints });
  try {
    await writer.initialize(GLOBAL, ring(1));
    assert.equal((await watcher.getRing()).version, 1, "the watch will start after this read");
    for (let version = 2; version <= 4; version++) await writer.setRing(ring(version));
    const { header } = await raw.kv.range({ key: Buffer.from("/compact/meta/the-one-ring") });
    await raw.kv.compact({ revision: header.revision, physical: true });
    const seen: number[] = [];
    watcher.watchRing((next) => seen.push(next.version));
    await watcher.syncRingWatchers();
    assert.deepEqual(seen, [4], "rings 2 and 3 left etcd's history; the newest arrives");
    assert.ok(logged.some((line) => line.includes("ring watch cancelled by etcd")), logged.join());
    await writer.setRing(ring(5));
    await watcher.syncRingWatchers();
    assert.deepEqual(seen, [4, 5]);
  } finally {
    raw.close();
    await watcher.close();
    await writer.close();
  }
});
