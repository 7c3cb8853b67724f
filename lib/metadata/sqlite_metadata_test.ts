import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { ManualClock } from "../clock.ts";
import { INodeRef } from "../core/block_ref.ts";
import { RING_WATCH_DELAY_MS_MAX, testMetadataService } from "./_metadata_conformance.ts";
import type { RingRecord } from "./metadata_service.ts";
import { RING_POLL_INTERVAL_MS, SQLITE_SCHEMA_VERSION, SqliteMetadata } from "./sqlite_metadata.ts";

const WORKER_PATH = new URL("./_sqlite_worker.ts", import.meta.url).pathname;
const GLOBAL = { blockSizeBytes: 4096, defaultBlockSpec: "crc,base" };
const RING: RingRecord = { version: 1, bytes: new Uint8Array([1, 2, 3]) };
const TTL_MS = 30_000;

/** A temporary directory, removed on dispose. */
async function tempDirectory(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "torus-sqlite-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

testMetadataService("SqliteMetadata", async (clock) => {
  const directory = await tempDirectory();
  const path = `${directory.path}/metadata.db`;
  const a = await SqliteMetadata.open({ path, clock, uuid: "client-a" });
  const b = await SqliteMetadata.open({ path, clock, uuid: "client-b" });
  return {
    a,
    b,
    close: async () => {
      await a.close();
      await b.close();
      await directory[Symbol.asyncDispose]();
    },
  };
});

Deno.test("SqliteMetadata: the ring poll interval is within the suite's watch delay", () => {
  assert.ok(RING_POLL_INTERVAL_MS > 0);
  assert.ok(RING_POLL_INTERVAL_MS <= RING_WATCH_DELAY_MS_MAX);
});

Deno.test("SqliteMetadata: open() makes a WAL database with a schema version", async () => {
  await using directory = await tempDirectory();
  const path = `${directory.path}/metadata.db`;
  const metadata = await SqliteMetadata.open({ path, clock: new ManualClock(0) });
  await metadata.close();
  const db = new DatabaseSync(path);
  try {
    assert.equal(db.prepare("PRAGMA journal_mode").get()?.journal_mode, "wal");
    const row = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get();
    assert.equal(row?.value, SQLITE_SCHEMA_VERSION);
  } finally {
    db.close();
  }
});

Deno.test("SqliteMetadata: open() refuses an unknown schema version", async () => {
  await using directory = await tempDirectory();
  const path = `${directory.path}/metadata.db`;
  await (await SqliteMetadata.open({ path, clock: new ManualClock(0) })).close();
  const db = new DatabaseSync(path);
  db.exec("UPDATE meta SET value = 99 WHERE key = 'schema_version'");
  db.close();
  await assert.rejects(SqliteMetadata.open({ path, clock: new ManualClock(0) }), SyntaxError);
});

Deno.test("SqliteMetadata: reopening keeps everything", async () => {
  await using directory = await tempDirectory();
  const path = `${directory.path}/metadata.db`;
  const clock = new ManualClock(1_000_000);
  const first = await SqliteMetadata.open({ path, clock, uuid: "node-1" });
  await first.initialize(GLOBAL, RING);
  await first.setRing({ version: 2, bytes: new Uint8Array([9, 8]) });
  const one = await first.createVolume("one", 1 << 20);
  const two = await first.createVolume("two", 1 << 30);
  const lease = await first.grantLease(TTL_MS);
  const token = await first.lockVolume(one.id, lease);
  await first.commitINode(token, new INodeRef(one.id, await first.nextINode(one.id)));
  const snapshot = await first.saveSnapshot(one.id, "snap");
  await first.registerPeer(lease, {
    uuid: "node-1",
    address: "tdp://127.0.0.1:4000",
    lastSeenMs: 0,
    totalBlocks: 10,
    usedBlocks: 2,
    rebalancing: false,
    lastRebalanceFinishMs: 5,
    lastRebalanceBlocks: 6,
    protocolVersion: 1,
  });
  const peers = await first.listPeers();
  await first.close();

  const second = await SqliteMetadata.open({ path, clock, uuid: "node-1" });
  try {
    assert.deepEqual(await second.globalMetadata(), GLOBAL);
    assert.deepEqual(await second.getRing(), { version: 2, bytes: new Uint8Array([9, 8]) });
    assert.deepEqual(await second.listVolumes(), [one, two]);
    assert.ok((await second.currentINode(one.id)).equals(new INodeRef(one.id, 2)));
    assert.equal(await second.nextINode(one.id), 3);
    assert.deepEqual(await second.listSnapshots(one.id), [snapshot]);
    assert.deepEqual(await second.listPeers(), peers);
    assert.equal(await second.lockStatus(one.id), "in-use");
    await second.renewLease(lease);
    await second.commitINode(token, new INodeRef(one.id, 3));
    assert.equal((await second.createVolume("three", 1)).id, 3);
  } finally {
    await second.close();
  }
});

Deno.test("SqliteMetadata: watchRing() sees another instance's ring within one poll", async () => {
  await using directory = await tempDirectory();
  const path = `${directory.path}/metadata.db`;
  const clock = new ManualClock(0);
  const watcher = await SqliteMetadata.open({ path, clock });
  const writer = await SqliteMetadata.open({ path, clock });
  try {
    await writer.initialize(GLOBAL, RING);
    const seen: number[] = [];
    const stop = watcher.watchRing((ring) => seen.push(ring.version));
    await writer.setRing({ version: 2, bytes: new Uint8Array([2]) });
    await writer.setRing({ version: 3, bytes: new Uint8Array([3]) });
    clock.advance(RING_POLL_INTERVAL_MS - 1);
    assert.deepEqual(seen, []);
    clock.advance(1);
    assert.deepEqual(seen, [3], "one poll delivers the newest ring");
    clock.advance(5 * RING_POLL_INTERVAL_MS);
    assert.deepEqual(seen, [3]);
    stop();
  } finally {
    await watcher.close();
    await writer.close();
  }
});

interface Worker {
  child: Deno.ChildProcess;
  output: Promise<string>;
  errors: Promise<string>;
}

/** Spawns a worker and resolves once it has opened the database. */
async function startWorker(path: string, volumeName: string): Promise<Worker> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", WORKER_PATH, path, volumeName],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const errors = new Response(child.stderr).text();
  let text = "";
  let onReady = () => {};
  const ready = new Promise<void>((resolve) => onReady = resolve);
  const output = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.startsWith("ready\n")) onReady();
    }
    return text;
  })();
  await Promise.race([ready, output]);
  if (!text.startsWith("ready\n")) {
    await child.status;
    throw new Error(`Cannot start worker: ${await errors}`);
  }
  return { child, output, errors };
}

Deno.test("SqliteMetadata: nextINode() from three processes at once loses nothing", async () => {
  await using directory = await tempDirectory();
  const path = `${directory.path}/metadata.db`;
  const callsPerProcess = 200;
  const parent = await SqliteMetadata.open({ path, clock: new ManualClock(0) });
  try {
    await parent.initialize(GLOBAL, RING);
    const volume = await parent.createVolume("shared", 1 << 20);
    const workers = await Promise.all([
      startWorker(path, "shared"),
      startWorker(path, "shared"),
    ]);
    const go = new TextEncoder().encode("go\n");
    for (const worker of workers) {
      const writer = worker.child.stdin.getWriter();
      await writer.write(go);
      await writer.close();
    }
    const numbers: number[] = [];
    for (let index = 0; index < callsPerProcess; index++) {
      numbers.push(await parent.nextINode(volume.id));
    }
    for (const worker of workers) {
      const status = await worker.child.status;
      const errors = await worker.errors;
      assert.ok(status.success, `worker failed: ${errors}`);
      const lines = (await worker.output).trim().split("\n");
      const got: unknown = JSON.parse(lines[lines.length - 1]!);
      assert.ok(Array.isArray(got));
      assert.equal(got.length, callsPerProcess);
      for (const value of got) {
        assert.equal(typeof value, "number");
        numbers.push(value);
      }
    }
    const total = 3 * callsPerProcess;
    assert.equal(new Set(numbers).size, total, "all numbers distinct");
    numbers.sort((left, right) => left - right);
    assert.deepEqual(numbers, Array.from({ length: total }, (_, index) => index + 2));
    assert.equal(await parent.nextINode(volume.id), total + 2, "none lost");
  } finally {
    await parent.close();
  }
});
