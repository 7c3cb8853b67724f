import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Etcd3, type IKeyValue } from "etcd3";
import { ManualClock } from "../clock.ts";
import { INodeRef } from "../core/block_ref.ts";
import {
  FencedError,
  NotInitializedError,
  VolumeInUseError,
  VolumeNotFoundError,
} from "../errors.ts";
import { PeerInfoSchema, RingSchema, VolumeSchema } from "../models/torus_pb.ts";
import type { MetadataService, PeerRecord, RingRecord } from "./metadata_service.ts";
import { testMetadataService } from "./_metadata_conformance.ts";
import { type EtcdServer, startEtcd } from "./_etcd_server.ts";
import {
  ETCD_CLOSE_TIMEOUT_MS,
  ETCD_LEASE_TTL_GRANULARITY_MS,
  EtcdMetadata,
  wipeEtcd,
} from "./etcd_metadata.ts";

/**
 * One etcd for the conformance suite, started when the module loads (so no
 * test owns its process); every pair gets a fresh key prefix, which is a
 * fresh, empty store. The last test of the file closes it; if a filter
 * skips that test, the server's watchdog kills it when the process exits.
 */
const shared: { server: EtcdServer } | { error: unknown } = await startEtcd().then(
  (server) => ({ server }),
  (error) => ({ error }),
);

function sharedServer(): EtcdServer {
  if ("error" in shared) throw shared.error;
  return shared.server;
}

/**
 * How much real time a lease that must still be alive keeps in hand when
 * {@linkcode LeaseTimeline.elapse} returns, in milliseconds: the test's
 * next few requests run in it.
 */
const ALIVE_MARGIN_MS = 300;
/** How long past its deadline etcd may take to expire a lease (its lessor checks every 500 ms). */
const EXPIRY_DELAY_MS_MAX = 5_000;
/** How often an expiring lease is polled, in milliseconds. */
const EXPIRY_POLL_INTERVAL_MS = 20;

interface TrackedLease {
  id: number;
  /** When the lease runs out by the test's manual clock. */
  clockExpiresAtMs: number;
  /** `performance.now()` before which etcd cannot have expired it (request start + ttl). */
  realDeadlineMs: number;
  expiredInEtcd: boolean;
}

/**
 * The `elapse` of an etcd pair. The suite's manual clock says which leases
 * ran out; etcd expires them in real time. `elapse(ms)` advances the clock,
 * sleeps up to `ms` of real time (less when a lease that must stay alive
 * would come too close to its real deadline), then waits until etcd has
 * expired every lease the clock says ran out, polling etcd. It throws when
 * a lease that must still be alive may already have expired in real time:
 * the suite's schedule then does not fit etcd, and the test says so instead
 * of failing on a confusing assertion.
 */
class LeaseTimeline {
  #clock: ManualClock;
  #probe: Etcd3;
  #leases = new Map<number, TrackedLease>();

  constructor(clock: ManualClock, endpoints: string[]) {
    this.#clock = clock;
    this.#probe = new Etcd3({ hosts: endpoints });
  }

  /** `service`, with its lease calls recorded here. */
  track(service: EtcdMetadata): MetadataService {
    return new Proxy(service, {
      get: (target, property) => {
        if (property === "grantLease") {
          return async (ttlMs: number) => {
            const startMs = performance.now();
            const lease = await target.grantLease(ttlMs);
            this.#leases.set(lease.id, {
              id: lease.id,
              clockExpiresAtMs: this.#clock.nowMs() + lease.ttlMs,
              realDeadlineMs: startMs + lease.ttlMs,
              expiredInEtcd: false,
            });
            return lease;
          };
        }
        if (property === "renewLease") {
          return async (lease: { id: number; ttlMs: number }) => {
            const startMs = performance.now();
            await target.renewLease(lease);
            const tracked = this.#leases.get(lease.id);
            if (tracked !== undefined) {
              tracked.clockExpiresAtMs = this.#clock.nowMs() + lease.ttlMs;
              tracked.realDeadlineMs = startMs + lease.ttlMs;
            }
          };
        }
        if (property === "revokeLease") {
          return async (lease: { id: number }) => {
            await target.revokeLease(lease as never);
            this.#leases.delete(lease.id);
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  async #expiredInEtcd(id: number): Promise<boolean> {
    const response = await this.#probe.leaseClient.leaseTimeToLive({ ID: String(id) });
    return Number(response.TTL) === -1;
  }

  async elapse(ms: number): Promise<void> {
    this.#clock.advance(ms);
    const nowMs = this.#clock.nowMs();
    const leases = [...this.#leases.values()];
    const mustLive = leases.filter((lease) => lease.clockExpiresAtMs > nowMs);
    const mustDie = leases.filter((lease) => lease.clockExpiresAtMs <= nowMs);
    const budgetsMs = mustLive.map((lease) =>
      lease.realDeadlineMs - performance.now() - ALIVE_MARGIN_MS
    );
    const sleepMs = Math.min(mustLive.length === 0 ? 0 : ms, ...budgetsMs);
    if (sleepMs > 0) await new Promise((resolve) => setTimeout(resolve, sleepMs));
    for (const lease of mustDie) {
      while (!lease.expiredInEtcd) {
        lease.expiredInEtcd = await this.#expiredInEtcd(lease.id);
        if (lease.expiredInEtcd) break;
        if (performance.now() > lease.realDeadlineMs + EXPIRY_DELAY_MS_MAX) {
          throw new Error(`etcd did not expire lease ${lease.id} in time`);
        }
        await new Promise((resolve) => setTimeout(resolve, EXPIRY_POLL_INTERVAL_MS));
      }
    }
    for (const lease of mustLive) {
      if (performance.now() > lease.realDeadlineMs - ALIVE_MARGIN_MS / 2) {
        throw new Error(
          `Cannot elapse ${ms} ms: lease ${lease.id} must still be alive but is within ` +
            `${ALIVE_MARGIN_MS / 2} ms of expiring in etcd`,
        );
      }
      assert.equal(await this.#expiredInEtcd(lease.id), false, `lease ${lease.id} is alive`);
    }
  }

  close(): void {
    this.#probe.close();
  }
}

let pairs = 0;

testMetadataService("EtcdMetadata", async (clock) => {
  const server = sharedServer();
  const keyPrefix = `/torus-conformance/${++pairs}/`;
  const options = { endpoints: server.endpoints, clock, keyPrefix };
  const a = await EtcdMetadata.open({ ...options, uuid: "client-a" });
  const b = await EtcdMetadata.open({ ...options, uuid: "client-b" });
  const timeline = new LeaseTimeline(clock, server.endpoints);
  return {
    a: timeline.track(a),
    b: timeline.track(b),
    elapse: (ms) => timeline.elapse(ms),
    settleWatchers: async () => {
      await a.syncRingWatchers();
      await b.syncRingWatchers();
    },
    leaseTtlGranularityMs: ETCD_LEASE_TTL_GRANULARITY_MS,
    close: async () => {
      await a.close();
      await b.close();
      timeline.close();
    },
  };
});

const GLOBAL = { blockSizeBytes: 4096, defaultBlockSpec: "crc,base" };
const START_MS = 1_700_000_000_000;
/** Longest a test waits for etcd to expire a 1-second lease, in milliseconds. */
const LEASE_EXPIRY_WAIT_MS = 5_000;
/** Longest a closed client may keep its process alive, in milliseconds. */
const EXIT_AFTER_CLOSE_MS_MAX = ETCD_CLOSE_TIMEOUT_MS + 3_000;

function ring(version: number): RingRecord {
  return { version, bytes: toBinary(RingSchema, create(RingSchema, { type: 4, version })) };
}

function peer(uuid: string): PeerRecord {
  return {
    uuid,
    address: "tdp://127.0.0.1:4000",
    lastSeenMs: 0,
    totalBlocks: 100,
    usedBlocks: 7,
    rebalancing: false,
    lastRebalanceFinishMs: 12,
    lastRebalanceBlocks: 3,
    protocolVersion: 1,
  };
}

let prefixes = 0;

/** A key prefix no other test uses, on the shared etcd. */
function freshPrefix(name: string): string {
  return `/torus-test/${name}-${++prefixes}/`;
}

/** Every key-value under `prefix`, by key. */
async function rawKeys(server: EtcdServer, prefix: string): Promise<Map<string, IKeyValue>> {
  const raw = new Etcd3({ hosts: server.endpoints });
  try {
    const response = await raw.getAll().prefix(prefix).exec();
    return new Map(response.kvs.map((kv) => [kv.key.toString("utf8").slice(prefix.length), kv]));
  } finally {
    raw.close();
  }
}

/** Polls `condition` every 20 ms until it holds, failing after `timeoutMs`. */
async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs: number) {
  const deadlineMs = performance.now() + timeoutMs;
  while (!await condition()) {
    if (performance.now() > deadlineMs) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

Deno.test("EtcdMetadata: keys and values follow the original's layout", async () => {
  const server = sharedServer();
  const prefix = freshPrefix("layout");
  const clock = new ManualClock(START_MS);
  const metadata = await EtcdMetadata.open({
    endpoints: server.endpoints,
    clock,
    uuid: "node-a",
    keyPrefix: prefix,
  });
  try {
    await metadata.initialize(GLOBAL, ring(1));
    const volume = await metadata.createVolume("vol", 1 << 20);
    const lease = await metadata.grantLease(5_000);
    const token = await metadata.lockVolume(volume.id, lease);
    await metadata.commitINode(token, new INodeRef(volume.id, await metadata.nextINode(volume.id)));
    clock.advance(1_500);
    await metadata.saveSnapshot(volume.id, "snap");
    await metadata.registerPeer(lease, peer("node-a"));

    const keys = await rawKeys(server, prefix);
    assert.deepEqual([...keys.keys()].sort(), [
      "meta/globalmetadata",
      "meta/leaseminter",
      "meta/the-one-ring",
      "meta/volumeminter",
      "nodes/node-a",
      "volumeid/1",
      "volumemeta/1/blockinode",
      "volumemeta/1/blocklock",
      "volumemeta/1/inode",
      "volumemeta/1/snapshots/snap",
      "volumes/vol",
    ]);
    const value = (key: string) => new Uint8Array(keys.get(key)!.value);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(value("meta/globalmetadata"))), {
      BlockSize: 4096,
      DefaultBlockSpec: "crc,base",
    });
    assert.deepEqual(value("meta/volumeminter"), new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
    assert.deepEqual(value("meta/the-one-ring"), ring(1).bytes);
    assert.deepEqual(value("volumes/vol"), new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
    const stored = fromBinary(VolumeSchema, value("volumeid/1"));
    assert.deepEqual(
      { name: stored.name, id: stored.id, type: stored.type, maxBytes: stored.maxBytes },
      { name: "vol", id: 1n, type: "block", maxBytes: BigInt(1 << 20) },
    );
    assert.deepEqual(value("volumemeta/1/inode"), new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0]));
    assert.deepEqual(value("volumemeta/1/blockinode"), new INodeRef(1, 2).toBytes());
    const lock = keys.get("volumemeta/1/blocklock")!;
    assert.equal(lock.value.toString("utf8"), "node-a");
    assert.equal(Number(lock.lease), lease.id, "the lock is bound to the lease");
    assert.equal(Number(lock.create_revision), token.fence, "the fence is the create revision");
    assert.deepEqual(JSON.parse(new TextDecoder().decode(value("volumemeta/1/snapshots/snap"))), {
      Name: "snap",
      When: "2023-11-14T22:13:21.5Z",
      INodeRef: Buffer.from(new INodeRef(1, 2).toBytes()).toString("base64"),
    });
    const node = keys.get("nodes/node-a")!;
    assert.equal(Number(node.lease), lease.id, "the registration is bound to the lease");
    const info = fromBinary(PeerInfoSchema, new Uint8Array(node.value));
    assert.equal(info.uuid, "node-a");
    assert.equal(info.lastSeen, BigInt(START_MS + 1_500) * 1_000_000n, "nanoseconds");
    assert.equal(info.rebalanceInfo?.lastRebalanceFinish, 12_000_000n);

    await metadata.revokeLease(lease);
    const after = await rawKeys(server, prefix);
    assert.equal(after.has("volumemeta/1/blocklock"), false, "revoking deletes the lock");
    assert.equal(after.has("nodes/node-a"), false, "and the registration");
  } finally {
    await metadata.close();
  }
});

Deno.test("EtcdMetadata: deleteVolume() of id 0x2 leaves volumes 0x20..0x2f alone", async () => {
  const server = sharedServer();
  const prefix = freshPrefix("hex");
  const metadata = await EtcdMetadata.open({
    endpoints: server.endpoints,
    clock: new ManualClock(START_MS),
    keyPrefix: prefix,
  });
  try {
    await metadata.initialize(GLOBAL, ring(1));
    const lease = await metadata.grantLease(30_000);
    const volumes = [];
    for (let id = 1; id <= 0x2f; id++) {
      volumes.push(await metadata.createVolume(`vol-${id.toString(16)}`, 4096));
    }
    assert.equal(volumes.at(-1)!.id, 0x2f);
    const neighbours = volumes.filter((volume) => volume.id >= 0x20);
    assert.equal(neighbours.length, 16);
    for (const volume of [volumes[1]!, ...neighbours]) {
      const token = await metadata.lockVolume(volume.id, lease);
      await metadata.commitINode(
        token,
        new INodeRef(volume.id, await metadata.nextINode(volume.id)),
      );
      await metadata.saveSnapshot(volume.id, "snap");
      if (volume.id === 0x2) await metadata.unlockVolume(token);
    }
    const before = await rawKeys(server, prefix);
    await metadata.deleteVolume("vol-2");

    const after = await rawKeys(server, prefix);
    const gone = [...before.keys()].filter((key) => !after.has(key)).sort();
    assert.deepEqual(gone, [
      "volumeid/2",
      "volumemeta/2/blockinode",
      "volumemeta/2/inode",
      "volumemeta/2/snapshots/snap",
      "volumes/vol-2",
    ]);
    for (const volume of neighbours) {
      const hex = volume.id.toString(16);
      for (const key of ["inode", "blockinode", "blocklock", "snapshots/snap"]) {
        assert.ok(after.has(`volumemeta/${hex}/${key}`), `volumemeta/${hex}/${key}`);
      }
      assert.equal(await metadata.lockStatus(volume.id), "in-use");
      assert.ok((await metadata.currentINode(volume.id)).equals(new INodeRef(volume.id, 2)));
      assert.deepEqual((await metadata.listSnapshots(volume.id)).map((s) => s.name), ["snap"]);
    }
    await assert.rejects(metadata.currentINode(2), VolumeNotFoundError);
    await metadata.revokeLease(lease);
  } finally {
    await metadata.close();
  }
});

Deno.test("wipeEtcd() deletes its prefix and nothing next to it", async () => {
  const server = sharedServer();
  const base = freshPrefix("wipe");
  const clock = new ManualClock(START_MS);
  const endpoints = server.endpoints;
  for (const name of ["torus", "torus2"]) {
    const metadata = await EtcdMetadata.open({ endpoints, clock, keyPrefix: `${base}${name}` });
    await metadata.initialize(GLOBAL, ring(1));
    await metadata.createVolume("vol", 4096);
    await metadata.close();
  }
  const raw = new Etcd3({ hosts: endpoints });
  try {
    await raw.put(`${base}torus`).value("a key named like the prefix");
    await raw.put(`${base}torus-x/y`).value("a neighbour");
    const ours = (await rawKeys(server, `${base}torus/`)).size;
    const total = (await rawKeys(server, base)).size;
    assert.ok(ours >= 5);

    assert.equal(await wipeEtcd({ endpoints, keyPrefix: `${base}torus` }), ours);
    assert.equal((await rawKeys(server, `${base}torus/`)).size, 0);
    assert.equal((await rawKeys(server, base)).size, total - ours);
    assert.equal(await raw.get(`${base}torus`).string(), "a key named like the prefix");
    assert.equal(await raw.get(`${base}torus-x/y`).string(), "a neighbour");

    const wiped = await EtcdMetadata.open({ endpoints, clock, keyPrefix: `${base}torus` });
    const kept = await EtcdMetadata.open({ endpoints, clock, keyPrefix: `${base}torus2` });
    try {
      await assert.rejects(wiped.globalMetadata(), NotInitializedError);
      await wiped.initialize(GLOBAL, ring(1));
      assert.equal((await wiped.createVolume("vol", 4096)).id, 1);
      assert.deepEqual((await kept.listVolumes()).map((volume) => volume.name), ["vol"]);
    } finally {
      await wiped.close();
      await kept.close();
    }
    await assert.rejects(wipeEtcd({ endpoints, keyPrefix: "/" }), RangeError);
  } finally {
    raw.close();
  }
});

Deno.test("EtcdMetadata: a writer whose lease lapsed can never commit (issue #230)", async () => {
  const server = sharedServer();
  const options = {
    endpoints: server.endpoints,
    clock: new ManualClock(START_MS),
    keyPrefix: freshPrefix("fencing"),
  };
  const a = await EtcdMetadata.open({ ...options, uuid: "writer-a" });
  const b = await EtcdMetadata.open({ ...options, uuid: "writer-b" });
  try {
    await a.initialize(GLOBAL, ring(1));
    const volume = await a.createVolume("vol", 4096);
    const isFree = async () => await b.lockStatus(volume.id) === "free";

    // The lease lapses (a paused or partitioned writer) and nobody takes over.
    const lapsed = await a.grantLease(1_000);
    assert.equal(lapsed.ttlMs, 1_000);
    const tokenA = await a.lockVolume(volume.id, lapsed);
    const inodeA = await a.nextINode(volume.id);
    await waitFor("etcd to expire the lease", isFree, LEASE_EXPIRY_WAIT_MS);
    await assert.rejects(a.commitINode(tokenA, new INodeRef(volume.id, inodeA)), FencedError);
    assert.ok((await b.currentINode(volume.id)).equals(new INodeRef(volume.id, 1)));
    await assert.rejects(a.renewLease(lapsed), FencedError);
    await assert.rejects(a.lockVolume(volume.id, lapsed), FencedError);

    // The lease lapses and another writer takes the lock over.
    const tokenA2 = await a.lockVolume(volume.id, await a.grantLease(1_000));
    assert.ok(tokenA2.fence > tokenA.fence, "every acquisition gets a larger fence");
    await waitFor("etcd to expire the lease", isFree, LEASE_EXPIRY_WAIT_MS);
    const leaseB = await b.grantLease(30_000);
    const tokenB = await b.lockVolume(volume.id, leaseB);
    assert.ok(tokenB.fence > tokenA2.fence);
    const inodeB = await b.nextINode(volume.id);
    await assert.rejects(a.commitINode(tokenA2, new INodeRef(volume.id, inodeA)), FencedError);
    const forged = { ...tokenA2, fence: tokenB.fence, leaseId: tokenB.leaseId };
    await assert.rejects(a.commitINode(forged, new INodeRef(volume.id, inodeA)), FencedError);
    await a.unlockVolume(tokenA2);
    assert.equal(await a.lockStatus(volume.id), "in-use", "a stale unlock releases nothing");
    const otherLease = { ...tokenB, leaseId: tokenB.leaseId + 1 };
    await assert.rejects(b.commitINode(otherLease, new INodeRef(volume.id, inodeB)), FencedError);
    const otherFence = { ...tokenB, fence: tokenB.fence + 1 };
    await assert.rejects(b.commitINode(otherFence, new INodeRef(volume.id, inodeB)), FencedError);
    await b.commitINode(tokenB, new INodeRef(volume.id, inodeB));
    assert.ok((await a.currentINode(volume.id)).equals(new INodeRef(volume.id, inodeB)));
    await assert.rejects(a.deleteVolume("vol"), VolumeInUseError);

    await b.revokeLease(leaseB);
    assert.equal(await a.lockStatus(volume.id), "free");
    await assert.rejects(b.commitINode(tokenB, new INodeRef(volume.id, inodeB)), FencedError);
    await a.deleteVolume("vol");
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("EtcdMetadata: lease times to live round up to whole seconds", async () => {
  const server = sharedServer();
  const metadata = await EtcdMetadata.open({
    endpoints: server.endpoints,
    clock: new ManualClock(START_MS),
    keyPrefix: freshPrefix("ttl"),
  });
  try {
    for (const [askedMs, grantedMs] of [[1, 1_000], [1_000, 1_000], [1_001, 2_000]]) {
      const lease = await metadata.grantLease(askedMs!);
      assert.equal(lease.ttlMs, grantedMs, `asked ${askedMs} ms`);
      await metadata.revokeLease(lease);
      await assert.rejects(metadata.renewLease(lease), FencedError);
    }
  } finally {
    await metadata.close();
  }
});

/** Runs `_etcd_close_worker.ts`; resolves with how long it ran after being told to close. */
async function closeWorker(server: EtcdServer, prefix: string, beforeClose: () => Promise<void>) {
  const worker = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./_etcd_close_worker.ts", import.meta.url).pathname,
      server.endpoint,
      prefix,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = worker.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = new Response(worker.stderr).text();
  let text = "";
  while (!text.includes("ready\n")) {
    const { value, done } = await stdout.read();
    if (done) break;
    text += value;
  }
  if (!text.includes("ready\n")) {
    await worker.status;
    throw new Error(`Cannot start the close worker: ${await stderr}`);
  }
  await beforeClose();
  const closedAtMs = performance.now();
  const writer = worker.stdin.getWriter();
  await writer.write(new TextEncoder().encode("close\n"));
  await writer.close();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), EXIT_AFTER_CLOSE_MS_MAX);
  });
  const outcome = await Promise.race([worker.status, timeout]);
  clearTimeout(timer);
  if (outcome === "timeout") worker.kill("SIGKILL");
  const status = await worker.status;
  for (;;) {
    const { value, done } = await stdout.read();
    if (done) break;
    text += value;
  }
  assert.notEqual(outcome, "timeout", `the process did not exit after close(): ${text}`);
  assert.ok(status.success, await stderr);
  assert.ok(text.includes("closed\n"), text);
  return performance.now() - closedAtMs;
}

Deno.test("EtcdMetadata: after close() the process exits, with etcd up or gone", async () => {
  await using etcd = await startEtcd();
  const setup = await EtcdMetadata.open({
    endpoints: etcd.endpoints,
    clock: new ManualClock(START_MS),
    keyPrefix: "/close",
  });
  await setup.initialize(GLOBAL, ring(1));
  await setup.close();
  await closeWorker(etcd, "/close", () => Promise.resolve());
  await closeWorker(etcd, "/close", () => etcd.kill());
});

Deno.test("EtcdMetadata: (last) the shared etcd stops", async () => {
  await sharedServer().close();
});
