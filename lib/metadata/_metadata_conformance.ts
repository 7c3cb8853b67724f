/**
 * The conformance suite every {@linkcode MetadataService} implementation
 * passes. Each implementation's test file calls {@linkcode testMetadataService}
 * with a function that opens two clients, with different uuids, on one fresh
 * shared store and one {@linkcode ManualClock}.
 *
 * Time: the tests let lease time pass with `elapse(ms)`. For stores whose
 * leases expire by the injected clock (memory, SQLite) it advances the
 * clock, so expiry boundaries are exact (alive at `ttl - 1`, dead at `ttl`).
 * A store whose leases expire in real time (etcd) supplies
 * {@linkcode MetadataPair.elapse}: it advances the clock too (timestamps
 * follow it) and then really waits until the store agrees with the clock,
 * that is until every lease that ran out by the clock has expired in the
 * store, while the others are still alive. The assertions are the same for
 * every store; only how long a test takes differs.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { ManualClock } from "../clock.ts";
import { INodeRef } from "../core/block_ref.ts";
import { NAME_LENGTH_BYTES_MAX, VOLUME_SIZE_BYTES_MAX } from "../constants.ts";
import {
  AlreadyExistsError,
  ClosedError,
  ConflictError,
  FencedError,
  NotInitializedError,
  SnapshotNotFoundError,
  VolumeInUseError,
  VolumeNotFoundError,
} from "../errors.ts";
import { RingSchema } from "../models/torus_pb.ts";
import type {
  GlobalMetadata,
  MetadataService,
  PeerRecord,
  RingRecord,
} from "./metadata_service.ts";

/**
 * The longest an implementation may take, in milliseconds of the clock, to
 * deliver a ring set by another client to a watcher. Implementations that
 * poll must poll at least this often.
 */
export const RING_WATCH_DELAY_MS_MAX = 10_000;

/** Two clients of one fresh, empty store, and how to dispose of both. */
export interface MetadataPair {
  a: MetadataService;
  b: MetadataService;
  close(): Promise<void>;
  /**
   * Lets `ms` of lease time pass for both clients. On return, every lease
   * whose time to live ran out by the clock has expired in the store, and
   * every other lease is still alive.
   * @default {advances the clock by `ms`}
   */
  elapse?(ms: number): Promise<void>;
  /**
   * Waits until every ring watcher of both clients has been offered every
   * ring stored so far. Called after the clock advanced by
   * {@linkcode RING_WATCH_DELAY_MS_MAX} and one macrotask ran.
   * @default {nothing more}
   */
  settleWatchers?(): Promise<void>;
  /**
   * Granularity of lease times to live, in milliseconds: `grantLease(ttlMs)`
   * grants `ttlMs` rounded up to a multiple of it (etcd: whole seconds).
   * @default {1}
   */
  leaseTtlGranularityMs?: number;
}

/** Opens a {@linkcode MetadataPair} whose clients both use `clock`. */
export type OpenMetadataPair = (clock: ManualClock) => Promise<MetadataPair>;

/** Start of the test clock: far from 0, so that a zero default cannot pass for "now". */
const START_MS = 1_700_000_000_000;
/** Lease time to live used by the lock and peer tests. */
const TTL_MS = 1_000;
/**
 * Lease time to live of a test that holds locks through many requests and
 * never lets time pass, in milliseconds: long enough that a slow etcd (a
 * loaded CI machine fsyncing every request) cannot expire it mid-test.
 */
const HOLD_TTL_MS = 60_000;
const GLOBAL: GlobalMetadata = { blockSizeBytes: 4096, defaultBlockSpec: "crc,base" };
const VOLUME_SIZE_BYTES = 1 << 20;

/** A ring record: a marshalled `models.Ring` of `version`, distinct per version. */
function ring(version: number): RingRecord {
  const message = create(RingSchema, {
    type: 4,
    version,
    replicationFactor: 2,
    attrs: { test: new Uint8Array([version, 0xff, 0, 7]) },
  });
  return { version, bytes: toBinary(RingSchema, message) };
}

function peer(uuid: string, address: string): PeerRecord {
  return {
    uuid,
    address,
    lastSeenMs: 0,
    totalBlocks: 100,
    usedBlocks: 7,
    rebalancing: true,
    lastRebalanceFinishMs: 12,
    lastRebalanceBlocks: 3,
    protocolVersion: 1,
  };
}

/** How a test lets time pass and waits for ring watchers. */
interface Time {
  /** Lets `ms` of lease time pass (see {@linkcode MetadataPair.elapse}). */
  elapse(ms: number): Promise<void>;
  /** Fires due poll timers, lets microtasks and one macrotask run, then the pair's settling. */
  settleWatchers(): Promise<void>;
  /** The ttl a lease asked for `ttlMs` gets (see {@linkcode MetadataPair.leaseTtlGranularityMs}). */
  grantedTtlMs(ttlMs: number): number;
}

type Body = (a: MetadataService, b: MetadataService, time: Time) => Promise<void>;

/** Registers the conformance tests for one implementation. */
export function testMetadataService(name: string, open: OpenMetadataPair): void {
  /** Registers a test on a fresh pair, initialized unless `initialize` is false. */
  function test(title: string, body: Body, initialize = true): void {
    Deno.test(`${name}: ${title}`, async () => {
      const clock = new ManualClock(START_MS);
      const pair = await open(clock);
      const elapse = pair.elapse?.bind(pair) ?? ((ms: number) => {
        clock.advance(ms);
        return Promise.resolve();
      });
      const granularityMs = pair.leaseTtlGranularityMs ?? 1;
      const time: Time = {
        elapse,
        async settleWatchers() {
          await elapse(RING_WATCH_DELAY_MS_MAX);
          await new Promise<void>((resolve) => setTimeout(resolve, 0));
          await pair.settleWatchers?.();
        },
        grantedTtlMs: (ttlMs) => Math.ceil(ttlMs / granularityMs) * granularityMs,
      };
      try {
        if (initialize) await pair.a.initialize(GLOBAL, ring(1));
        await body(pair.a, pair.b, time);
      } finally {
        await pair.close();
      }
    });
  }

  test("clients have a kind and distinct uuids", (a, b) => {
    assert.equal(typeof a.kind, "string");
    assert.ok(a.kind.length > 0);
    assert.equal(a.kind, b.kind);
    assert.notEqual(a.uuid, b.uuid);
    return Promise.resolve();
  }, false);

  test("everything needing initialization throws NotInitializedError before it", async (a, b) => {
    await assert.rejects(a.globalMetadata(), NotInitializedError);
    await assert.rejects(b.getRing(), NotInitializedError);
    await assert.rejects(a.setRing(ring(2)), NotInitializedError);
    await assert.rejects(b.createVolume("vol", VOLUME_SIZE_BYTES), NotInitializedError);
    assert.deepEqual(await a.listVolumes(), []);
  }, false);

  test("volumeIdHighwater() counts every id handed out, deleted or not", async (a, b) => {
    assert.equal(await a.volumeIdHighwater(), 0);
    await a.createVolume("one", VOLUME_SIZE_BYTES);
    const two = await b.createVolume("two", VOLUME_SIZE_BYTES);
    await assert.rejects(a.createVolume("two", VOLUME_SIZE_BYTES), AlreadyExistsError);
    assert.equal(await b.volumeIdHighwater(), two.id);
    await a.deleteVolume("two");
    assert.equal(await a.volumeIdHighwater(), two.id);
    const three = await a.createVolume("three", VOLUME_SIZE_BYTES);
    assert.ok(three.id > two.id, "ids are never reused");
    assert.equal(await b.volumeIdHighwater(), three.id);
  });

  test("initialize() stores global metadata and the first ring for every client", async (a, b) => {
    await a.initialize(GLOBAL, ring(1));
    assert.deepEqual(await a.globalMetadata(), GLOBAL);
    assert.deepEqual(await b.globalMetadata(), GLOBAL);
    assert.deepEqual(await b.getRing(), ring(1));
  }, false);

  test("initialize() twice throws AlreadyExistsError and changes nothing", async (a, b) => {
    await a.initialize(GLOBAL, ring(1));
    const other: GlobalMetadata = { blockSizeBytes: 8192, defaultBlockSpec: "base" };
    await assert.rejects(b.initialize(other, ring(5)), AlreadyExistsError);
    await assert.rejects(a.initialize(GLOBAL, ring(1)), AlreadyExistsError);
    assert.deepEqual(await b.globalMetadata(), GLOBAL);
    assert.deepEqual(await a.getRing(), ring(1));
  }, false);

  test("initialize() refuses bad global metadata with RangeError", async (a) => {
    await assert.rejects(
      a.initialize({ blockSizeBytes: 100, defaultBlockSpec: "crc,base" }, ring(1)),
      RangeError,
    );
    await assert.rejects(
      a.initialize({ blockSizeBytes: 4096.5, defaultBlockSpec: "crc,base" }, ring(1)),
      RangeError,
    );
    // Not a power of two: a 4 KiB page would straddle two blocks.
    for (const blockSizeBytes of [1000, 3 * 4096]) {
      await assert.rejects(
        a.initialize({ blockSizeBytes, defaultBlockSpec: "crc,base" }, ring(1)),
        /must be a power of two/,
      );
    }
    await assert.rejects(
      a.initialize({ blockSizeBytes: 4096, defaultBlockSpec: "" }, ring(1)),
      RangeError,
    );
    await assert.rejects(a.initialize(GLOBAL, ring(0)), RangeError);
    await assert.rejects(a.globalMetadata(), NotInitializedError);
  }, false);

  test("setRing() takes exactly the next version, visible to every client", async (a, b) => {
    await a.setRing(ring(2));
    assert.deepEqual(await b.getRing(), ring(2));
    await assert.rejects(b.setRing(ring(2)), ConflictError);
    await assert.rejects(b.setRing(ring(4)), ConflictError);
    await assert.rejects(b.setRing(ring(1)), ConflictError);
    await b.setRing(ring(3));
    assert.deepEqual(await a.getRing(), ring(3));
  });

  test("getRing() returns a copy the caller may change", async (a) => {
    const first = await a.getRing();
    first.bytes.fill(0);
    assert.deepEqual(await a.getRing(), ring(1));
  });

  test("watchRing() reports new rings to watchers of both clients", async (a, b, time) => {
    const seenA: RingRecord[] = [];
    const seenB: RingRecord[] = [];
    const stopA = a.watchRing((next) => seenA.push(next));
    const stopB = b.watchRing((next) => seenB.push(next));
    await time.settleWatchers();
    assert.deepEqual(seenA, [], "the current ring is not news");
    await a.setRing(ring(2));
    await time.settleWatchers();
    assert.deepEqual(seenA, [ring(2)]);
    assert.deepEqual(seenB, [ring(2)]);
    await b.setRing(ring(3));
    await time.settleWatchers();
    assert.deepEqual(seenA, [ring(2), ring(3)]);
    assert.deepEqual(seenB, [ring(2), ring(3)]);
    stopA();
    await a.setRing(ring(4));
    await time.settleWatchers();
    assert.deepEqual(seenA, [ring(2), ring(3)], "a stopped watcher hears nothing");
    assert.deepEqual(seenB, [ring(2), ring(3), ring(4)]);
    stopB();
  });

  test("createVolume() hands out ids from 1, increasing, shared by clients", async (a, b) => {
    const one = await a.createVolume("one", VOLUME_SIZE_BYTES);
    const two = await b.createVolume("two", 2 * VOLUME_SIZE_BYTES);
    const three = await a.createVolume("three", 3);
    assert.deepEqual(one, { name: "one", id: 1, type: "block", sizeBytes: VOLUME_SIZE_BYTES });
    assert.deepEqual(two, { name: "two", id: 2, type: "block", sizeBytes: 2 * VOLUME_SIZE_BYTES });
    assert.equal(three.id, 3);
    assert.deepEqual(await b.getVolume("one"), one);
    assert.deepEqual(await a.getVolume("two"), two);
    assert.deepEqual(await b.listVolumes(), [one, three, two]);
    await assert.rejects(a.getVolume("four"), VolumeNotFoundError);
  });

  test("createVolume() of a taken name throws AlreadyExistsError", async (a, b) => {
    const first = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    await assert.rejects(b.createVolume("vol", 2 * VOLUME_SIZE_BYTES), AlreadyExistsError);
    assert.deepEqual(await a.listVolumes(), [first]);
    const next = await b.createVolume("vol2", VOLUME_SIZE_BYTES);
    assert.ok(next.id > first.id);
  });

  test("createVolume() refuses bad names with RangeError", async (a) => {
    const bad = [
      "",
      "a/b",
      "/",
      "a@b",
      "@",
      "a\u0000b",
      "a\nb",
      "tab\there",
      "del\u007f",
      "c1\u0085",
      "x".repeat(NAME_LENGTH_BYTES_MAX + 1),
      "\u00e9".repeat(NAME_LENGTH_BYTES_MAX / 2 + 1),
      "lone\ud800",
    ];
    for (const name of bad) {
      await assert.rejects(
        a.createVolume(name, VOLUME_SIZE_BYTES),
        RangeError,
        `name ${JSON.stringify(name)}`,
      );
    }
    assert.deepEqual(await a.listVolumes(), []);
    const longest = "x".repeat(NAME_LENGTH_BYTES_MAX);
    await a.createVolume(longest, VOLUME_SIZE_BYTES);
    await a.createVolume("vol-1_2.3 \u00e9\u{1f600}", VOLUME_SIZE_BYTES);
    assert.equal((await a.getVolume(longest)).name, longest);
  });

  test("createVolume() refuses bad sizes with RangeError", async (a) => {
    for (const sizeBytes of [0, -1, 1.5, NaN, Infinity, VOLUME_SIZE_BYTES_MAX + 1]) {
      await assert.rejects(a.createVolume("vol", sizeBytes), RangeError, `size ${sizeBytes}`);
    }
    const largest = await a.createVolume("vol", VOLUME_SIZE_BYTES_MAX);
    assert.equal(largest.sizeBytes, VOLUME_SIZE_BYTES_MAX);
    assert.equal((await a.createVolume("tiny", 1)).sizeBytes, 1);
  });

  test(
    "createVolume() starts the INode counter at 1 and the current INode at (id, 1)",
    async (a, b) => {
      await a.createVolume("first", VOLUME_SIZE_BYTES);
      const volume = await a.createVolume("second", VOLUME_SIZE_BYTES);
      const current = await b.currentINode(volume.id);
      assert.ok(current instanceof INodeRef);
      assert.ok(current.equals(new INodeRef(volume.id, 1)));
      assert.equal(await a.inodeCounter(volume.id), 1);
      assert.equal(await b.nextINode(volume.id), 2);
      assert.equal(await a.nextINode(volume.id), 3);
      assert.equal(await b.inodeCounter(volume.id), 3, "reading does not allocate");
      assert.equal(await b.inodeCounter(volume.id), 3);
      assert.ok((await a.currentINode(volume.id)).equals(new INodeRef(volume.id, 1)));
    },
  );

  test(
    "resizeVolume() grows a volume, visible to every client; the same size is a no-op",
    async (a, b) => {
      const other = await a.createVolume("other", VOLUME_SIZE_BYTES);
      const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
      const token = await a.lockVolume(volume.id, await a.grantLease(HOLD_TTL_MS));
      const inode = await a.nextINode(volume.id);
      await a.commitINode(token, new INodeRef(volume.id, inode));
      await a.unlockVolume(token);
      await a.saveSnapshot(volume.id, "snap");

      const grown = await a.resizeVolume("vol", 3 * VOLUME_SIZE_BYTES);
      const expected = {
        name: "vol",
        id: volume.id,
        type: "block",
        sizeBytes: 3 * VOLUME_SIZE_BYTES,
      };
      assert.deepEqual(grown, expected);
      assert.deepEqual(await b.getVolume("vol"), expected);
      assert.deepEqual(await b.listVolumes(), [other, expected]);
      assert.deepEqual(await b.resizeVolume("vol", 3 * VOLUME_SIZE_BYTES), expected, "a no-op");
      assert.deepEqual(await a.getVolume("vol"), expected);

      assert.ok((await b.currentINode(volume.id)).equals(new INodeRef(volume.id, inode)));
      assert.equal(await b.inodeCounter(volume.id), inode);
      assert.equal(await b.nextINode(volume.id), inode + 1, "the INode counter continues");
      const snapshots = await b.listSnapshots(volume.id);
      assert.deepEqual(snapshots.map((snapshot) => snapshot.name), ["snap"]);
      assert.ok(snapshots[0]!.inode.equals(new INodeRef(volume.id, inode)));
      assert.equal(await b.lockStatus(volume.id), "free");
      assert.deepEqual(await a.getVolume("other"), other, "other volumes keep their size");

      const largest = await b.resizeVolume("vol", VOLUME_SIZE_BYTES_MAX);
      assert.deepEqual(largest, { ...expected, sizeBytes: VOLUME_SIZE_BYTES_MAX });
      assert.deepEqual(await a.getVolume("vol"), largest);
    },
  );

  test(
    "resizeVolume() refuses to shrink, bad sizes and missing volumes, changing nothing",
    async (a, b) => {
      const volume = await a.createVolume("vol", 2 * VOLUME_SIZE_BYTES);
      for (const sizeBytes of [2 * VOLUME_SIZE_BYTES - 1, VOLUME_SIZE_BYTES, 1]) {
        await assert.rejects(b.resizeVolume("vol", sizeBytes), (error: unknown) => {
          assert.ok(error instanceof RangeError);
          assert.equal(
            error.message,
            `Cannot resize volume "vol" to ${sizeBytes} bytes: it has ${2 * VOLUME_SIZE_BYTES} ` +
              `bytes, and shrinking would cut off data`,
          );
          return true;
        });
      }
      assert.deepEqual(await a.getVolume("vol"), volume);
      for (const sizeBytes of [0, -1, 1.5, NaN, Infinity, VOLUME_SIZE_BYTES_MAX + 1]) {
        await assert.rejects(a.resizeVolume("vol", sizeBytes), (error: unknown) => {
          assert.ok(error instanceof RangeError, `size ${sizeBytes}`);
          assert.match(error.message, /^Cannot resize volume "vol" as 'sizeBytes' must be/);
          return true;
        });
        await assert.rejects(a.resizeVolume("nope", sizeBytes), RangeError, "the size comes first");
      }
      assert.deepEqual(await b.getVolume("vol"), volume);
      assert.deepEqual(await b.listVolumes(), [volume]);

      await assert.rejects(b.resizeVolume("nope", VOLUME_SIZE_BYTES), (error: unknown) => {
        assert.ok(error instanceof VolumeNotFoundError);
        assert.equal(error.message, `Cannot resize volume "nope": it does not exist`);
        return true;
      });
      await assert.rejects(a.getVolume("nope"), VolumeNotFoundError);
      await b.deleteVolume("vol");
      await assert.rejects(a.resizeVolume("vol", 4 * VOLUME_SIZE_BYTES), VolumeNotFoundError);
      await assert.rejects(b.getVolume("vol"), VolumeNotFoundError);
      assert.deepEqual(await a.listVolumes(), []);
      const again = await b.createVolume("vol", VOLUME_SIZE_BYTES);
      assert.ok(again.id > volume.id);
      assert.deepEqual(await a.resizeVolume("vol", 2 * VOLUME_SIZE_BYTES), {
        ...again,
        sizeBytes: 2 * VOLUME_SIZE_BYTES,
      });
    },
  );

  test(
    "resizeVolume() works while the volume is locked; the lock and its token stay valid",
    async (a, b) => {
      const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
      const token = await a.lockVolume(volume.id, await a.grantLease(HOLD_TTL_MS));
      const grown = await b.resizeVolume("vol", 2 * VOLUME_SIZE_BYTES);
      assert.deepEqual(grown, { ...volume, sizeBytes: 2 * VOLUME_SIZE_BYTES });
      assert.equal(await b.lockStatus(volume.id), "in-use");
      const inode = await a.nextINode(volume.id);
      await a.commitINode(token, new INodeRef(volume.id, inode));
      assert.ok((await b.currentINode(volume.id)).equals(new INodeRef(volume.id, inode)));
      assert.equal(
        (await a.resizeVolume("vol", 4 * VOLUME_SIZE_BYTES)).sizeBytes,
        4 * VOLUME_SIZE_BYTES,
        "by the holder too",
      );
      await a.commitINode(token, new INodeRef(volume.id, await a.nextINode(volume.id)));
      assert.equal(await a.lockStatus(volume.id), "in-use");
      await assert.rejects(
        b.lockVolume(volume.id, await b.grantLease(HOLD_TTL_MS)),
        VolumeInUseError,
      );
      await assert.rejects(b.deleteVolume("vol"), VolumeInUseError);
      assert.equal((await b.getVolume("vol")).sizeBytes, 4 * VOLUME_SIZE_BYTES);
    },
  );

  test(
    "resizeVolume() racing resizes keeps the largest; racing a delete never resurrects it",
    async (a, b) => {
      await a.createVolume("vol", VOLUME_SIZE_BYTES);
      const factors = [2, 3, 4, 5, 6, 7, 8, 9];
      const results = await Promise.allSettled(
        factors.map((factor, index) =>
          (index % 2 === 0 ? a : b).resizeVolume("vol", factor * VOLUME_SIZE_BYTES)
        ),
      );
      results.forEach((result, index) => {
        const sizeBytes = factors[index]! * VOLUME_SIZE_BYTES;
        if (result.status === "fulfilled") {
          assert.equal(result.value.sizeBytes, sizeBytes);
        } else {
          assert.ok(result.reason instanceof RangeError, `size ${sizeBytes}: ${result.reason}`);
        }
      });
      assert.equal((await b.getVolume("vol")).sizeBytes, 9 * VOLUME_SIZE_BYTES);

      for (let round = 0; round < 5; round++) {
        const name = `race${round}`;
        await b.createVolume(name, VOLUME_SIZE_BYTES);
        const [resized, deleted] = await Promise.allSettled([
          a.resizeVolume(name, 2 * VOLUME_SIZE_BYTES),
          b.deleteVolume(name),
        ]);
        assert.equal(deleted.status, "fulfilled");
        if (resized.status === "rejected") {
          assert.ok(resized.reason instanceof VolumeNotFoundError, String(resized.reason));
        }
        await assert.rejects(a.getVolume(name), VolumeNotFoundError);
      }
      assert.deepEqual((await b.listVolumes()).map((volume) => volume.name), ["vol"]);
    },
  );

  test("nextINode() from both clients at once gives distinct numbers, none lost", async (a, b) => {
    const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    const other = await b.createVolume("other", VOLUME_SIZE_BYTES);
    const callsPerClient = 50;
    const calls: Promise<number>[] = [];
    for (let index = 0; index < callsPerClient; index++) {
      calls.push(a.nextINode(volume.id), b.nextINode(volume.id));
    }
    const numbers = (await Promise.all(calls)).sort((left, right) => left - right);
    const expected = Array.from({ length: 2 * callsPerClient }, (_, index) => index + 2);
    assert.deepEqual(numbers, expected);
    assert.equal(await a.nextINode(volume.id), 2 * callsPerClient + 2);
    assert.equal(await b.nextINode(other.id), 2, "counters are per volume");
  });

  test("INode methods of a missing volume throw VolumeNotFoundError", async (a, b) => {
    await assert.rejects(a.nextINode(7), VolumeNotFoundError);
    await assert.rejects(b.inodeCounter(7), VolumeNotFoundError);
    await assert.rejects(b.currentINode(7), VolumeNotFoundError);
    await assert.rejects(a.lockStatus(7), VolumeNotFoundError);
    const lease = await a.grantLease(TTL_MS);
    await assert.rejects(a.lockVolume(7, lease), VolumeNotFoundError);
  });

  test("lockVolume() by a second locker throws VolumeInUseError naming the owner", async (a, b) => {
    const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    assert.equal(await b.lockStatus(volume.id), "free");
    const leaseA = await a.grantLease(TTL_MS);
    const leaseB = await b.grantLease(TTL_MS);
    const token = await a.lockVolume(volume.id, leaseA);
    assert.deepEqual(
      { volumeId: token.volumeId, owner: token.owner, leaseId: token.leaseId },
      { volumeId: volume.id, owner: a.uuid, leaseId: leaseA.id },
    );
    assert.equal(await a.lockStatus(volume.id), "in-use");
    assert.equal(await b.lockStatus(volume.id), "in-use");
    await assert.rejects(b.lockVolume(volume.id, leaseB), (error: unknown) => {
      assert.ok(error instanceof VolumeInUseError);
      assert.equal(error.message, `Cannot lock volume "vol": it is in use by ${a.uuid}`);
      return true;
    });
    await assert.rejects(a.lockVolume(volume.id, leaseA), VolumeInUseError, "not reentrant");
  });

  test("a lock whose lease expired is free and another client can take it", async (a, b, time) => {
    const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    const leaseA = await a.grantLease(TTL_MS);
    const tokenA = await a.lockVolume(volume.id, leaseA);
    await time.elapse(TTL_MS - 1);
    assert.equal(await b.lockStatus(volume.id), "in-use");
    await time.elapse(1);
    assert.equal(await b.lockStatus(volume.id), "free");
    const leaseB = await b.grantLease(TTL_MS);
    const tokenB = await b.lockVolume(volume.id, leaseB);
    assert.equal(tokenB.owner, b.uuid);
    assert.ok(tokenB.fence > tokenA.fence, "fences grow");
    assert.equal(await a.lockStatus(volume.id), "in-use");
  });

  test(
    "commitINode() after the lease expired throws FencedError, even with no new locker",
    async (a, b, time) => {
      const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
      const lease = await a.grantLease(TTL_MS);
      const token = await a.lockVolume(volume.id, lease);
      const inode = await a.nextINode(volume.id);
      await time.elapse(TTL_MS);
      await assert.rejects(a.commitINode(token, new INodeRef(volume.id, inode)), FencedError);
      assert.ok((await b.currentINode(volume.id)).equals(new INodeRef(volume.id, 1)));
      await assert.rejects(a.renewLease(lease), FencedError);
      await assert.rejects(a.lockVolume(volume.id, lease), FencedError);
      await time.elapse(10 * TTL_MS);
      await assert.rejects(a.commitINode(token, new INodeRef(volume.id, inode)), FencedError);
    },
  );

  test(
    "commitINode() with a taken-over token throws FencedError; the new holder commits",
    async (a, b, time) => {
      const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
      const tokenA = await a.lockVolume(volume.id, await a.grantLease(TTL_MS));
      await time.elapse(TTL_MS + 1);
      const tokenB = await b.lockVolume(volume.id, await b.grantLease(TTL_MS));
      const inodeA = await a.nextINode(volume.id);
      const inodeB = await b.nextINode(volume.id);
      await assert.rejects(a.commitINode(tokenA, new INodeRef(volume.id, inodeA)), FencedError);
      const forged = { ...tokenA, fence: tokenB.fence, leaseId: tokenB.leaseId };
      await assert.rejects(a.commitINode(forged, new INodeRef(volume.id, inodeA)), FencedError);
      await b.commitINode(tokenB, new INodeRef(volume.id, inodeB));
      assert.ok((await a.currentINode(volume.id)).equals(new INodeRef(volume.id, inodeB)));
    },
  );

  test("commitINode() with a valid token sets the current INode", async (a, b) => {
    const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    const token = await a.lockVolume(volume.id, await a.grantLease(TTL_MS));
    const first = await a.nextINode(volume.id);
    await a.commitINode(token, new INodeRef(volume.id, first));
    assert.ok((await b.currentINode(volume.id)).equals(new INodeRef(volume.id, first)));
    const second = await a.nextINode(volume.id);
    await a.commitINode(token, new INodeRef(volume.id, second));
    assert.ok((await b.currentINode(volume.id)).equals(new INodeRef(volume.id, second)));
    await a.commitINode(token, new INodeRef(volume.id, first));
    assert.ok(
      (await a.currentINode(volume.id)).equals(new INodeRef(volume.id, first)),
      "a restore may commit an older INode",
    );
    const other = await a.createVolume("other", VOLUME_SIZE_BYTES);
    await assert.rejects(a.commitINode(token, new INodeRef(other.id, 5)), RangeError);
  });

  test("renewLease() keeps a lock alive past its first ttl", async (a, b, time) => {
    const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    const lease = await a.grantLease(TTL_MS);
    const token = await a.lockVolume(volume.id, lease);
    for (let round = 0; round < 5; round++) {
      await time.elapse(TTL_MS - 1);
      await a.renewLease(lease);
    }
    assert.equal(await b.lockStatus(volume.id), "in-use");
    await a.commitINode(token, new INodeRef(volume.id, await a.nextINode(volume.id)));
    await assert.rejects(b.lockVolume(volume.id, await b.grantLease(TTL_MS)), VolumeInUseError);
  });

  test(
    "grantLease() gives distinct ids and refuses bad ttls with RangeError",
    async (a, b, time) => {
      const ids = new Set<number>();
      for (let index = 0; index < 5; index++) {
        ids.add((await a.grantLease(TTL_MS)).id);
        ids.add((await b.grantLease(TTL_MS)).id);
      }
      assert.equal(ids.size, 10);
      const lease = await a.grantLease(123);
      assert.equal(lease.ttlMs, time.grantedTtlMs(123));
      for (const ttlMs of [0, -1, 1.5, NaN]) {
        await assert.rejects(a.grantLease(ttlMs), RangeError, `ttl ${ttlMs}`);
      }
    },
  );

  test("unlockVolume() frees the lock and fences the old token", async (a, b) => {
    const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    const lease = await a.grantLease(TTL_MS);
    const token = await a.lockVolume(volume.id, lease);
    await a.unlockVolume(token);
    assert.equal(await b.lockStatus(volume.id), "free");
    await assert.rejects(a.commitINode(token, new INodeRef(volume.id, 2)), FencedError);
    const tokenB = await b.lockVolume(volume.id, await b.grantLease(TTL_MS));
    await a.unlockVolume(token);
    assert.equal(await a.lockStatus(volume.id), "in-use", "a stale unlock releases nothing");
    await b.commitINode(tokenB, new INodeRef(volume.id, 2));
    await b.unlockVolume(tokenB);
    const again = await a.lockVolume(volume.id, lease);
    assert.ok(again.fence > tokenB.fence);
  });

  test("revokeLease() frees the locks bound to it", async (a, b) => {
    const one = await a.createVolume("one", VOLUME_SIZE_BYTES);
    const two = await a.createVolume("two", VOLUME_SIZE_BYTES);
    const lease = await a.grantLease(TTL_MS);
    const token = await a.lockVolume(one.id, lease);
    await a.lockVolume(two.id, lease);
    const other = await b.grantLease(TTL_MS);
    const three = await b.createVolume("three", VOLUME_SIZE_BYTES);
    await b.lockVolume(three.id, other);
    await a.revokeLease(lease);
    assert.equal(await b.lockStatus(one.id), "free");
    assert.equal(await b.lockStatus(two.id), "free");
    assert.equal(await a.lockStatus(three.id), "in-use");
    await assert.rejects(a.commitINode(token, new INodeRef(one.id, 2)), FencedError);
    await assert.rejects(a.renewLease(lease), FencedError);
    await b.lockVolume(one.id, other);
  });

  test("deleteVolume() is refused while the lock is held", async (a, b, time) => {
    const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    const token = await a.lockVolume(volume.id, await a.grantLease(TTL_MS));
    await assert.rejects(b.deleteVolume("vol"), (error: unknown) => {
      assert.ok(error instanceof VolumeInUseError);
      assert.equal(error.message, `Cannot delete volume "vol": it is in use by ${a.uuid}`);
      return true;
    });
    await assert.rejects(a.deleteVolume("vol"), VolumeInUseError, "even by the holder");
    assert.deepEqual(await b.getVolume("vol"), volume);
    await a.unlockVolume(token);
    await b.deleteVolume("vol");
    await assert.rejects(a.getVolume("vol"), VolumeNotFoundError);
    await assert.rejects(a.currentINode(volume.id), VolumeNotFoundError);
    await assert.rejects(a.deleteVolume("vol"), VolumeNotFoundError);

    const expired = await a.createVolume("expired", VOLUME_SIZE_BYTES);
    const stale = await a.lockVolume(expired.id, await a.grantLease(TTL_MS));
    await time.elapse(TTL_MS);
    await b.deleteVolume("expired");
    await assert.rejects(a.commitINode(stale, new INodeRef(expired.id, 2)), FencedError);
  });

  test("deleteVolume() never reuses the id", async (a, b) => {
    const first = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    await a.deleteVolume("vol");
    const second = await b.createVolume("vol", VOLUME_SIZE_BYTES);
    assert.ok(second.id > first.id);
    assert.ok((await a.currentINode(second.id)).equals(new INodeRef(second.id, 1)));
    assert.equal(await a.lockStatus(second.id), "free");
  });

  test("deleteVolume() of id 2 leaves volumes 20..29 intact", async (a, b) => {
    const lease = await a.grantLease(HOLD_TTL_MS);
    const volumes = [];
    for (let index = 1; index <= 30; index++) {
      volumes.push(await a.createVolume(`vol${index}`, VOLUME_SIZE_BYTES));
    }
    assert.deepEqual(volumes.map((volume) => volume.id), volumes.map((_, index) => index + 1));
    const neighbours = volumes.slice(19, 29);
    assert.deepEqual(neighbours.map((volume) => volume.id), [
      20,
      21,
      22,
      23,
      24,
      25,
      26,
      27,
      28,
      29,
    ]);
    for (const volume of [volumes[1]!, ...neighbours]) {
      const token = await a.lockVolume(volume.id, lease);
      await a.commitINode(token, new INodeRef(volume.id, await a.nextINode(volume.id)));
      await a.saveSnapshot(volume.id, "snap");
      await a.commitINode(token, new INodeRef(volume.id, await a.nextINode(volume.id)));
      if (volume.id !== 2) continue;
      await a.unlockVolume(token);
    }
    await b.deleteVolume("vol2");
    await assert.rejects(b.getVolume("vol2"), VolumeNotFoundError);
    await assert.rejects(b.listSnapshots(2), VolumeNotFoundError);
    for (const volume of neighbours) {
      assert.deepEqual(await b.getVolume(volume.name), volume);
      assert.ok((await b.currentINode(volume.id)).equals(new INodeRef(volume.id, 3)));
      assert.equal(await b.lockStatus(volume.id), "in-use");
      const snapshots = await b.listSnapshots(volume.id);
      assert.deepEqual(snapshots.map((snapshot) => snapshot.name), ["snap"]);
      assert.ok(snapshots[0]!.inode.equals(new INodeRef(volume.id, 2)));
      assert.equal(await b.nextINode(volume.id), 4);
    }
    assert.equal((await b.listVolumes()).length, 29);
  });

  test("saveSnapshot() records the current INode at save time", async (a, b, time) => {
    const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    const initial = await a.saveSnapshot(volume.id, "initial");
    assert.deepEqual(
      { name: initial.name, createdMs: initial.createdMs },
      { name: "initial", createdMs: START_MS },
    );
    assert.ok(initial.inode.equals(new INodeRef(volume.id, 1)));
    const token = await a.lockVolume(volume.id, await a.grantLease(TTL_MS));
    const inode = await a.nextINode(volume.id);
    await a.commitINode(token, new INodeRef(volume.id, inode));
    await time.elapse(500);
    const saved = await b.saveSnapshot(volume.id, "after");
    assert.equal(saved.createdMs, START_MS + 500);
    assert.ok(saved.inode.equals(new INodeRef(volume.id, inode)));
    await a.commitINode(token, new INodeRef(volume.id, await a.nextINode(volume.id)));
    const listed = await a.listSnapshots(volume.id);
    assert.deepEqual(listed.map((snapshot) => snapshot.name), ["after", "initial"]);
    assert.ok(listed[0]!.inode.equals(new INodeRef(volume.id, inode)));
    assert.equal(listed[0]!.createdMs, START_MS + 500);
    assert.ok(listed[1]!.inode.equals(new INodeRef(volume.id, 1)));
  });

  test("snapshots: duplicate, missing, bad names and missing volumes", async (a, b) => {
    const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    const other = await a.createVolume("other", VOLUME_SIZE_BYTES);
    await a.saveSnapshot(volume.id, "snap");
    await assert.rejects(b.saveSnapshot(volume.id, "snap"), AlreadyExistsError);
    await b.saveSnapshot(other.id, "snap");
    await assert.rejects(a.deleteSnapshot(volume.id, "nope"), SnapshotNotFoundError);
    await assert.rejects(a.deleteSnapshot(99, "snap"), VolumeNotFoundError);
    await assert.rejects(a.saveSnapshot(99, "snap"), VolumeNotFoundError);
    await assert.rejects(a.listSnapshots(99), VolumeNotFoundError);
    for (const name of ["", "a@b", "a/b", "a\nb", "x".repeat(NAME_LENGTH_BYTES_MAX + 1)]) {
      await assert.rejects(a.saveSnapshot(volume.id, name), RangeError, JSON.stringify(name));
    }
    await b.deleteSnapshot(volume.id, "snap");
    assert.deepEqual(await a.listSnapshots(volume.id), []);
    await assert.rejects(b.deleteSnapshot(volume.id, "snap"), SnapshotNotFoundError);
    assert.deepEqual((await a.listSnapshots(other.id)).map((snapshot) => snapshot.name), ["snap"]);
    await a.saveSnapshot(volume.id, "snap");
    assert.equal((await b.listSnapshots(volume.id)).length, 1);
  });

  test("deleteVolume() removes its snapshots", async (a, b) => {
    const volume = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    await a.saveSnapshot(volume.id, "one");
    await a.saveSnapshot(volume.id, "two");
    await b.deleteVolume("vol");
    await assert.rejects(a.listSnapshots(volume.id), VolumeNotFoundError);
    const again = await a.createVolume("vol", VOLUME_SIZE_BYTES);
    assert.deepEqual(await b.listSnapshots(again.id), []);
    await b.saveSnapshot(again.id, "one");
  });

  test("registerPeer() and listPeers() follow the leases", async (a, b, time) => {
    assert.deepEqual(await a.listPeers(), []);
    const shortLease = await a.grantLease(TTL_MS);
    const longLease = await b.grantLease(3 * TTL_MS);
    await a.registerPeer(shortLease, peer(a.uuid, "tdp://127.0.0.1:4000"));
    await b.registerPeer(longLease, peer(b.uuid, ""));
    const expected = [
      { ...peer(a.uuid, "tdp://127.0.0.1:4000"), lastSeenMs: START_MS },
      { ...peer(b.uuid, ""), lastSeenMs: START_MS },
    ].sort((left, right) => (left.uuid < right.uuid ? -1 : 1));
    assert.deepEqual(await a.listPeers(), expected);
    assert.deepEqual(await b.listPeers(), expected);

    await time.elapse(TTL_MS / 2);
    const refreshed = { ...peer(a.uuid, "tdp://127.0.0.1:4000"), usedBlocks: 9 };
    await a.registerPeer(shortLease, refreshed);
    const listedA = (await b.listPeers()).find((record) => record.uuid === a.uuid);
    assert.deepEqual(listedA, { ...refreshed, lastSeenMs: START_MS + TTL_MS / 2 });
    assert.equal((await b.listPeers()).length, 2, "registering again replaces");

    await time.elapse(TTL_MS / 2);
    assert.deepEqual((await a.listPeers()).map((record) => record.uuid), [b.uuid]);
    await assert.rejects(a.registerPeer(shortLease, peer(a.uuid, "")), FencedError);
    const newLease = await a.grantLease(TTL_MS);
    await a.registerPeer(newLease, peer(a.uuid, "tdp://127.0.0.1:4001"));
    assert.equal((await b.listPeers()).length, 2);
    await assert.rejects(
      a.registerPeer(newLease, { ...peer(a.uuid, ""), usedBlocks: 1.5 }),
      RangeError,
    );
    await assert.rejects(a.registerPeer(newLease, peer("", "")), RangeError);
    await b.revokeLease(longLease);
    assert.deepEqual((await b.listPeers()).map((record) => record.uuid), [a.uuid]);
  });

  test("a closed client throws ClosedError and its watchers stop", async (a, b, time) => {
    const seen: RingRecord[] = [];
    a.watchRing((next) => seen.push(next));
    await a.close();
    await a.close();
    await assert.rejects(a.getRing(), ClosedError);
    await assert.rejects(a.createVolume("vol", VOLUME_SIZE_BYTES), ClosedError);
    await assert.rejects(a.grantLease(TTL_MS), ClosedError);
    assert.throws(() => a.watchRing(() => {}), ClosedError);
    await b.setRing(ring(2));
    await time.settleWatchers();
    assert.deepEqual(seen, []);
    assert.deepEqual(await b.getRing(), ring(2));
  });
}
