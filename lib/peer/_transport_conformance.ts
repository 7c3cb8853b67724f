/**
 * The conformance suite every {@linkcode Transport} passes. Each
 * implementation's test file calls {@linkcode testTransport} in one line;
 * tests that only make sense for one transport live in its own test file.
 *
 * The suite serves real stores (memory and file) through the transport and
 * checks, through the client, everything the `PeerClient` contract promises:
 * every op round-trips, the store's errors come back typed, bad arguments
 * are refused before anything is sent, a lying peer never yields wrong bytes,
 * calls pipeline and complete out of order, time out, survive the server
 * going away and coming back, and fail when the client is closed.
 *
 * @module
 */
import assertNode from "node:assert/strict";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { blockDigest, sectorCrcs } from "../core/sector.ts";
import {
  BlockCorruptError,
  BlockNotFoundError,
  OutOfSpaceError,
  PeerUnavailableError,
} from "../errors.ts";
import { Prng } from "../prng.ts";
import type { BlockStore } from "../storage/block_store.ts";
import { FileBlockStore } from "../storage/file_block_store.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { HookedStore } from "./_hooked_store.ts";
import type { PeerClient, PeerListener, Transport } from "./transport.ts";

/** A transport under test, with where its listeners may listen. */
export interface TransportFixture {
  /** The transport under test. */
  transport: Transport;
  /** An address to listen on, free now (for TCP, `tdp://127.0.0.1:0`). */
  listenAddress(): string;
}

/** Makes a transport for a cluster of `blockSizeBytes` blocks. */
export type OpenTransport = (
  options: { blockSizeBytes: number },
) => TransportFixture | Promise<TransportFixture>;

/** Milliseconds a test waits for a server that came back before giving up. */
const RECOVERY_WAIT_MS = 10_000;
/** A short call timeout, for tests of timeouts. */
const SHORT_TIMEOUT_MS = 150;
/** Block size of most tests: four sectors. */
const BLOCK = 16384;

function ref(inode: number, index: number, type: BlockType = BlockType.data): BlockRef {
  return new BlockRef(7, type, inode, index);
}

/** A store kind the suite serves. */
type StoreKind = "memory" | "file";

/** A fresh store; `close()` also removes its directory. */
async function openStore(
  kind: StoreKind,
  blockSizeBytes: number,
  numBlocks: number,
): Promise<BlockStore> {
  if (kind === "memory") return new MemoryBlockStore({ blockSizeBytes, numBlocks });
  const root = await Deno.makeTempDir({ prefix: "torus-peer-" });
  const store = await FileBlockStore.open({
    directory: `${root}/block`,
    blockSizeBytes,
    sizeBytes: numBlocks * blockSizeBytes,
  });
  const close = store.close.bind(store);
  store.close = async () => {
    try {
      await close();
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  };
  return store;
}

/** Everything one test uses; `close()` releases it all, in order. */
interface Rig {
  transport: Transport;
  fixture: TransportFixture;
  store: HookedStore;
  listener: PeerListener;
  client: PeerClient;
  close(): Promise<void>;
}

async function rig(
  open: OpenTransport,
  options: { kind?: StoreKind; blockSizeBytes?: number; numBlocks?: number } = {},
): Promise<Rig> {
  const blockSizeBytes = options.blockSizeBytes ?? BLOCK;
  const fixture = await open({ blockSizeBytes });
  const store = new HookedStore(
    await openStore(options.kind ?? "memory", blockSizeBytes, options.numBlocks ?? 16),
  );
  const listener = await fixture.transport.listen(fixture.listenAddress(), store);
  const client = fixture.transport.dial(listener.address);
  const rigged: Rig = {
    transport: fixture.transport,
    fixture,
    store,
    listener,
    client,
    async close() {
      store.open();
      await rigged.client.close();
      await rigged.listener.close();
      await store.close();
    },
  };
  return rigged;
}

/** Retries `call` until it resolves, for up to `timeoutMs`. */
async function eventually<T>(call: () => Promise<T>, timeoutMs = RECOVERY_WAIT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof PeerUnavailableError) || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** Whether `promise` is still pending after the event loop had a chance to settle it. */
async function pending(promise: Promise<unknown>, waitMs = 30): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  await new Promise((resolve) => setTimeout(resolve, waitMs));
  return !settled;
}

/** Registers the conformance tests of one Transport implementation. */
export function testTransport(name: string, open: OpenTransport): void {
  const prng = new Prng(0x7d9);

  for (const kind of ["memory", "file"] as const) {
    Deno.test(`${name}: every op round-trips against a remote ${kind} store`, async () => {
      const r = await rig(open, { kind, numBlocks: 8 });
      try {
        const { client, store } = r;
        const short = prng.fill(new Uint8Array(5000));
        const whole = new Uint8Array(BLOCK);
        whole.set(short);
        await client.writeBlock(ref(1, 1), short);
        const read = await client.readBlock(ref(1, 1));
        assertNode.deepEqual(read.data, whole, "a short write reads back zero-padded");
        assertNode.deepEqual(read.sectorCrcs, sectorCrcs(whole, BLOCK));
        assertNode.deepEqual(read.sectorCrcs, (await store.inner.readBlock(ref(1, 1))).sectorCrcs);

        const full = prng.fill(new Uint8Array(BLOCK));
        await client.writeBlock(ref(1, 2), full);
        for (
          const [offsetBytes, lengthBytes] of [
            [0, 1],
            [4095, 2],
            [4096, 4096],
            [100, 9000],
            [BLOCK - 1, 1],
            [0, BLOCK],
            [5000, 0],
            [BLOCK, 0],
          ] as const
        ) {
          const part = await client.readBlock(ref(1, 2), { offsetBytes, lengthBytes });
          assertNode.deepEqual(
            part.data,
            full.subarray(offsetBytes, offsetBytes + lengthBytes),
            `range ${offsetBytes}+${lengthBytes}`,
          );
          assertNode.deepEqual(part.sectorCrcs, sectorCrcs(full, BLOCK));
        }

        const patch = prng.fill(new Uint8Array(6000));
        const before = sectorCrcs(full, BLOCK);
        const crcs = await client.writeBlockRange(ref(1, 2), 3000, patch, blockDigest(before));
        full.set(patch, 3000);
        assertNode.deepEqual(crcs, sectorCrcs(full, BLOCK));
        assertNode.deepEqual((await client.readBlock(ref(1, 2))).data, full);
        const unchecked = await client.writeBlockRange(ref(1, 2), BLOCK - 1, new Uint8Array([9]));
        full[BLOCK - 1] = 9;
        assertNode.deepEqual(unchecked, sectorCrcs(full, BLOCK));

        await client.writeBlock(ref(1, 1, BlockType.inode), new Uint8Array([42]));
        assertNode.equal((await client.readBlock(ref(1, 1, BlockType.inode))).data[0], 42);
        assertNode.equal((await client.readBlock(ref(1, 1))).data[0], short[0]);

        assertNode.deepEqual(
          await client.hasBlocks([ref(1, 2), ref(9, 9), ref(1, 1), ref(1, 1, BlockType.inode)]),
          [true, false, true, true],
        );
        assertNode.deepEqual(await client.hasBlocks([]), []);
        assertNode.equal(await client.deleteBlock(ref(1, 1)), true);
        assertNode.equal(await client.deleteBlock(ref(1, 1)), false);
        assertNode.deepEqual(await client.hasBlocks([ref(1, 1), ref(1, 2)]), [false, true]);
        await client.flush();
        assertNode.ok(store.calls.includes("flush"));
        assertNode.equal(store.usedBlocks(), 2);
      } finally {
        await r.close();
      }
    });
  }

  Deno.test(`${name}: blocks smaller than a sector and the default 512 KiB round-trip`, async () => {
    for (const blockSizeBytes of [256, 512 * 1024]) {
      const r = await rig(open, { blockSizeBytes, numBlocks: 4 });
      try {
        const data = prng.fill(new Uint8Array(blockSizeBytes));
        await r.client.writeBlock(ref(2, 1), data);
        const read = await r.client.readBlock(ref(2, 1));
        assertNode.deepEqual(read.data, data);
        assertNode.deepEqual(read.sectorCrcs, sectorCrcs(data, blockSizeBytes));
        const part = await r.client.readBlock(ref(2, 1), { offsetBytes: 10, lengthBytes: 100 });
        assertNode.deepEqual(part.data, data.subarray(10, 110));
        const crcs = await r.client.writeBlockRange(ref(2, 1), 1, new Uint8Array([1, 2]));
        data.set([1, 2], 1);
        assertNode.deepEqual(crcs, sectorCrcs(data, blockSizeBytes));
      } finally {
        await r.close();
      }
    }
  });

  Deno.test(`${name}: hasBlocks() answers long lists in order`, async () => {
    const r = await rig(open, { numBlocks: 64 });
    try {
      for (let i = 0; i < 64; i += 3) await r.client.writeBlock(ref(3, i), new Uint8Array([i]));
      const refs = Array.from({ length: 10_000 }, (_, i) => ref(3, i % 128));
      const answers = await r.client.hasBlocks(refs);
      assertNode.equal(answers.length, refs.length);
      answers.forEach((answer, i) => {
        const index = i % 128;
        assertNode.equal(answer, index < 64 && index % 3 === 0, `ref ${i}`);
      });
    } finally {
      await r.close();
    }
  });

  Deno.test(`${name}: the store's errors come back typed`, async () => {
    const r = await rig(open, { numBlocks: 2 });
    try {
      const { client } = r;
      await assertNode.rejects(client.readBlock(ref(4, 1)), BlockNotFoundError);
      await assertNode.rejects(
        client.writeBlockRange(ref(4, 1), 0, new Uint8Array(1)),
        BlockNotFoundError,
      );
      const data = prng.fill(new Uint8Array(BLOCK));
      await client.writeBlock(ref(4, 1), data);
      await client.writeBlock(ref(4, 2), data);
      await assertNode.rejects(client.writeBlock(ref(4, 3), data), OutOfSpaceError);
      assertNode.equal(r.store.usedBlocks(), 2);
      await assertNode.rejects(
        client.writeBlockRange(
          ref(4, 1),
          0,
          new Uint8Array(1),
          blockDigest(sectorCrcs(data, BLOCK)) ^ 1,
        ),
        BlockCorruptError,
      );
      assertNode.deepEqual(
        (await client.readBlock(ref(4, 1))).data,
        data,
        "refused write changed nothing",
      );

      (r.store.inner as MemoryBlockStore).corruptForTest(ref(4, 1), 5000);
      await assertNode.rejects(client.readBlock(ref(4, 1)), BlockCorruptError);
      await assertNode.rejects(
        client.readBlock(ref(4, 1), { offsetBytes: 4096, lengthBytes: 10 }),
        BlockCorruptError,
      );
      const head = await client.readBlock(ref(4, 1), { offsetBytes: 0, lengthBytes: 4096 });
      assertNode.deepEqual(head.data, data.subarray(0, 4096), "intact sectors still read");
      await assertNode.rejects(
        client.writeBlockRange(ref(4, 1), 4200, new Uint8Array(10)),
        BlockCorruptError,
      );
      // The connection survives every error.
      assertNode.deepEqual((await client.readBlock(ref(4, 2))).data, data);
    } finally {
      await r.close();
    }
  });

  Deno.test(`${name}: bad arguments are refused before anything is sent`, async () => {
    const r = await rig(open);
    try {
      const { client, store } = r;
      await client.writeBlock(ref(5, 1), new Uint8Array([1]));
      const callsBefore = store.calls.length;
      for (
        const range of [
          { offsetBytes: BLOCK - 1, lengthBytes: 2 },
          { offsetBytes: -1, lengthBytes: 1 },
          { offsetBytes: 0.5, lengthBytes: 1 },
          { offsetBytes: 0, lengthBytes: BLOCK + 1 },
          { offsetBytes: BLOCK + 1, lengthBytes: 0 },
          { offsetBytes: 2 ** 53, lengthBytes: 1 },
        ]
      ) {
        await assertNode.rejects(
          client.readBlock(ref(5, 1), range),
          RangeError,
          JSON.stringify(range),
        );
      }
      await assertNode.rejects(client.writeBlock(ref(5, 1), new Uint8Array(BLOCK + 1)), RangeError);
      await assertNode.rejects(
        client.writeBlockRange(ref(5, 1), BLOCK - 1, new Uint8Array(2)),
        RangeError,
      );
      await assertNode.rejects(
        client.writeBlockRange(ref(5, 1), -1, new Uint8Array(1)),
        RangeError,
      );
      for (const digest of [-1, 2 ** 32, 1.5, NaN]) {
        await assertNode.rejects(
          client.writeBlockRange(ref(5, 1), 0, new Uint8Array(1), digest),
          RangeError,
          `digest ${digest}`,
        );
      }
      for (const timeoutMs of [0, -1, NaN]) {
        await assertNode.rejects(client.flush({ timeoutMs }), RangeError, `timeout ${timeoutMs}`);
      }
      assertNode.deepEqual(store.calls.slice(callsBefore), [], "nothing reached the store");
    } finally {
      await r.close();
    }
  });

  Deno.test(`${name}: a peer that returns wrong bytes gives BlockCorruptError, never the bytes`, async () => {
    const r = await rig(open);
    try {
      const data = prng.fill(new Uint8Array(BLOCK));
      await r.client.writeBlock(ref(6, 1), data);
      r.store.lie = (bytes) => {
        const out = bytes.slice();
        out[out.length - 1] = out[out.length - 1]! ^ 1;
        return out;
      };
      await assertNode.rejects(r.client.readBlock(ref(6, 1)), BlockCorruptError);
      await assertNode.rejects(
        r.client.readBlock(ref(6, 1), { offsetBytes: BLOCK - 5000, lengthBytes: 10 }),
        BlockCorruptError,
      );
      r.store.lie = (bytes) => new Uint8Array(bytes.length);
      await assertNode.rejects(
        r.client.readBlock(ref(6, 1), { offsetBytes: 0, lengthBytes: 4096 }),
        BlockCorruptError,
      );
      r.store.lie = null;
      assertNode.deepEqual((await r.client.readBlock(ref(6, 1))).data, data);
    } finally {
      await r.close();
    }
  });

  Deno.test(`${name}: many calls in flight at once all complete correctly`, async () => {
    const count = 300;
    const r = await rig(open, { numBlocks: count });
    try {
      const blocks = Array.from({ length: count }, (_, i) => {
        const data = new Uint8Array(BLOCK);
        new DataView(data.buffer).setUint32(0, i);
        data.fill(i & 0xff, 4, 64);
        return data;
      });
      await Promise.all(blocks.map((data, i) => r.client.writeBlock(ref(8, i), data)));
      const reads = await Promise.all(
        blocks.map((_, i) =>
          i % 2 === 0
            ? r.client.readBlock(ref(8, i))
            : r.client.readBlock(ref(8, i), { offsetBytes: 0, lengthBytes: 64 })
        ),
      );
      reads.forEach((read, i) => {
        assertNode.deepEqual(read.data, i % 2 === 0 ? blocks[i] : blocks[i]!.subarray(0, 64));
      });
      const mixed = await Promise.all([
        r.client.hasBlocks(blocks.map((_, i) => ref(8, i))),
        r.client.deleteBlock(ref(8, 0)),
        r.client.flush(),
        r.client.writeBlockRange(ref(8, 1), 0, new Uint8Array([1])),
      ]);
      assertNode.ok(mixed[0].every((stored) => stored));
      assertNode.equal(mixed[1], true);
    } finally {
      await r.close();
    }
  });

  Deno.test(`${name}: a slow call does not hold up later ones (out-of-order replies)`, async () => {
    const r = await rig(open);
    try {
      const data = prng.fill(new Uint8Array(BLOCK));
      await r.client.writeBlock(ref(9, 1), data);
      await r.client.writeBlock(ref(9, 2), data);
      r.store.gated.add(ref(9, 1).key());
      const slow = r.client.readBlock(ref(9, 1), undefined, { timeoutMs: 30_000 });
      await r.store.untilWaiting(1);
      const fast = await r.client.readBlock(ref(9, 2));
      assertNode.deepEqual(fast.data, data);
      assertNode.equal(await r.client.deleteBlock(ref(9, 2)), true);
      assertNode.ok(await pending(slow), "the slow read is still waiting");
      r.store.open();
      assertNode.deepEqual((await slow).data, data);
    } finally {
      await r.close();
    }
  });

  Deno.test(`${name}: a call that takes too long fails with PeerUnavailableError`, async () => {
    const r = await rig(open);
    try {
      await r.client.writeBlock(ref(10, 1), new Uint8Array([1]));
      r.store.gated.add(ref(10, 1).key());
      const started = Date.now();
      await assertNode.rejects(
        r.client.readBlock(ref(10, 1), undefined, { timeoutMs: SHORT_TIMEOUT_MS }),
        PeerUnavailableError,
      );
      const elapsedMs = Date.now() - started;
      assertNode.ok(elapsedMs >= SHORT_TIMEOUT_MS - 20, `gave up after ${elapsedMs} ms`);
      assertNode.ok(elapsedMs < SHORT_TIMEOUT_MS + 2_000, `gave up after ${elapsedMs} ms`);
      await assertNode.rejects(
        r.client.writeBlock(ref(10, 1), new Uint8Array([2]), { timeoutMs: SHORT_TIMEOUT_MS }),
        PeerUnavailableError,
      );
      r.store.open();
      // The peer is answering again: the client recovers.
      const read = await eventually(() => r.client.readBlock(ref(10, 1)));
      assertNode.ok(read.data[0] === 1 || read.data[0] === 2);
      await r.client.flush();
    } finally {
      await r.close();
    }
  });

  Deno.test(`${name}: a peer that is gone fails calls, and is used again once back`, async () => {
    const fixture = await open({ blockSizeBytes: BLOCK });
    const store = new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 4 });
    let listener = await fixture.transport.listen(fixture.listenAddress(), store);
    const address = listener.address;
    const client = fixture.transport.dial(address);
    try {
      const data = prng.fill(new Uint8Array(BLOCK));
      await client.writeBlock(ref(11, 1), data);
      await listener.close();
      await assertNode.rejects(client.readBlock(ref(11, 1)), PeerUnavailableError);
      await assertNode.rejects(client.flush(), PeerUnavailableError);
      listener = await fixture.transport.listen(address, store);
      const read = await eventually(() => client.readBlock(ref(11, 1)));
      assertNode.deepEqual(read.data, data);
      await client.writeBlock(ref(11, 2), data);
      assertNode.deepEqual(await client.hasBlocks([ref(11, 1), ref(11, 2)]), [true, true]);
    } finally {
      await client.close();
      await listener.close();
      await store.close();
    }
  });

  Deno.test(`${name}: a peer that never listened fails calls with PeerUnavailableError`, async () => {
    const fixture = await open({ blockSizeBytes: BLOCK });
    const store = new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 4 });
    const listener = await fixture.transport.listen(fixture.listenAddress(), store);
    const address = listener.address;
    await listener.close();
    const client = fixture.transport.dial(address);
    try {
      await assertNode.rejects(client.readBlock(ref(12, 1)), PeerUnavailableError);
      await assertNode.rejects(client.hasBlocks([ref(12, 1)]), PeerUnavailableError);
      assertNode.equal(client.address, address);
    } finally {
      await client.close();
      await store.close();
    }
  });

  Deno.test(`${name}: close() fails pending and later calls with PeerUnavailableError`, async () => {
    const r = await rig(open);
    try {
      await r.client.writeBlock(ref(13, 1), new Uint8Array([1]));
      r.store.gated.add(ref(13, 1).key());
      const stuck = r.client.readBlock(ref(13, 1), undefined, { timeoutMs: 30_000 });
      const stuckWrite = r.client.writeBlock(ref(13, 1), new Uint8Array([2]), {
        timeoutMs: 30_000,
      });
      await r.store.untilWaiting(2);
      await r.client.close();
      await assertNode.rejects(stuck, PeerUnavailableError);
      await assertNode.rejects(stuckWrite, PeerUnavailableError);
      await assertNode.rejects(r.client.readBlock(ref(13, 1)), PeerUnavailableError);
      await assertNode.rejects(r.client.flush(), PeerUnavailableError);
      await r.client.close();
      // Other clients are unaffected.
      r.store.open();
      const other = r.transport.dial(r.listener.address);
      try {
        assertNode.deepEqual(await other.hasBlocks([ref(13, 1)]), [true]);
      } finally {
        await other.close();
      }
    } finally {
      await r.close();
    }
  });

  Deno.test(`${name}: a listener's close() lets calls in flight finish`, async () => {
    const r = await rig(open);
    try {
      await r.client.writeBlock(ref(14, 1), new Uint8Array([1]));
      r.store.gated.add(ref(14, 1).key());
      const write = r.client.writeBlock(ref(14, 1), new Uint8Array([7]), { timeoutMs: 30_000 });
      await r.store.untilWaiting(1);
      const closing = r.listener.close();
      assertNode.ok(await pending(closing), "close() waits for the call in flight");
      r.store.open();
      await write;
      await closing;
      assertNode.equal((await r.store.inner.readBlock(ref(14, 1))).data[0], 7);
      await assertNode.rejects(r.client.readBlock(ref(14, 1)), PeerUnavailableError);
    } finally {
      await r.close();
    }
  });

  Deno.test(`${name}: one listener serves many clients; one transport serves many stores`, async () => {
    const fixture = await open({ blockSizeBytes: BLOCK });
    const stores = [0, 1].map(() => new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 8 }));
    const listeners = await Promise.all(
      stores.map((store) => fixture.transport.listen(fixture.listenAddress(), store)),
    );
    assertNode.notEqual(listeners[0]!.address, listeners[1]!.address);
    const clients = [0, 1, 2, 3].map((i) => fixture.transport.dial(listeners[i % 2]!.address));
    try {
      await Promise.all(
        clients.map((client, i) => client.writeBlock(ref(15, i), new Uint8Array([i]))),
      );
      assertNode.equal(stores[0]!.usedBlocks(), 2);
      assertNode.equal(stores[1]!.usedBlocks(), 2);
      for (const [i, client] of clients.entries()) {
        assertNode.deepEqual(
          await client.hasBlocks([ref(15, 0), ref(15, 1), ref(15, 2), ref(15, 3)]),
          [0, 1, 2, 3].map((j) => j % 2 === i % 2),
        );
      }
    } finally {
      await Promise.all(clients.map((client) => client.close()));
      await Promise.all(listeners.map((listener) => listener.close()));
      await Promise.all(stores.map((store) => store.close()));
    }
  });
}
