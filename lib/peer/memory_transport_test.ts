import { testTransport } from "./_transport_conformance.ts";
import { SystemClock } from "../clock.ts";
import assert from "node:assert/strict";
import { ManualClock } from "../clock.ts";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { blockDigest } from "../core/sector.ts";
import {
  BlockCorruptError,
  BlockNotFoundError,
  OutOfSpaceError,
  PeerUnavailableError,
} from "../errors.ts";
import type { BlockRange, BlockRead } from "../storage/block_store.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { MemoryTransport } from "./memory_transport.ts";

const BLOCK = 4096;
const ref = (index: number) => new BlockRef(1, BlockType.data, 1, index);

function setup(options: { latencyMs?: number } = {}) {
  const clock = new ManualClock(0);
  const transport = new MemoryTransport({ clock, latencyMs: options.latencyMs });
  const store = new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 4 });
  return { clock, transport, store };
}

/** Lets pending promise reactions run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("MemoryTransport: every PeerClient call reaches the listening store", async () => {
  const { transport, store } = setup();
  const listener = await transport.listen("mem://a", store);
  assert.equal(listener.address, "mem://a");
  const client = transport.dial("mem://a");
  assert.equal(client.address, "mem://a");
  await client.writeBlock(ref(1), new Uint8Array([1, 2, 3]));
  const read = await client.readBlock(ref(1), { offsetBytes: 1, lengthBytes: 2 });
  assert.deepEqual(read.data, new Uint8Array([2, 3]));
  const crcs = await client.writeBlockRange(
    ref(1),
    0,
    new Uint8Array([9]),
    blockDigest(read.sectorCrcs),
  );
  assert.deepEqual(crcs, (await store.readBlock(ref(1))).sectorCrcs);
  assert.deepEqual(await client.hasBlocks([ref(1), ref(2), ref(1)]), [true, false, true]);
  await client.flush();
  assert.equal(await client.deleteBlock(ref(1)), true);
  assert.equal(await client.deleteBlock(ref(1)), false);
  await client.close();
  await listener.close();
});

Deno.test("MemoryTransport: buffers are copied both ways", async () => {
  const { transport, store } = setup();
  await transport.listen("mem://a", store);
  const client = transport.dial("mem://a");
  const data = new Uint8Array([5, 5, 5]);
  const writing = client.writeBlock(ref(1), data);
  data[0] = 6; // the caller reuses its buffer while the call is in flight
  await writing;
  const first = await client.readBlock(ref(1));
  assert.equal(first.data[0], 5);
  first.data[0] = 7;
  first.sectorCrcs[0] = 0;
  const second = await client.readBlock(ref(1));
  assert.equal(second.data[0], 5, "mutating a reply does not reach the store");
  assert.deepEqual(second.sectorCrcs, (await store.readBlock(ref(1))).sectorCrcs);
  const crcs = await client.writeBlockRange(ref(1), 1, new Uint8Array([8]));
  crcs[0] = 0;
  assert.notEqual((await store.readBlock(ref(1))).sectorCrcs[0], 0);
});

Deno.test("MemoryTransport: the store's errors arrive with their class", async () => {
  const { transport, store } = setup();
  await transport.listen("mem://a", store);
  const client = transport.dial("mem://a");
  await assert.rejects(client.readBlock(ref(1)), BlockNotFoundError);
  await client.writeBlock(ref(1), new Uint8Array([1]));
  await assert.rejects(
    client.writeBlockRange(ref(1), 0, new Uint8Array(1), 12345),
    BlockCorruptError,
  );
  await assert.rejects(client.writeBlock(ref(1), new Uint8Array(BLOCK + 1)), RangeError);
  await assert.rejects(client.readBlock(ref(1), { offsetBytes: -1, lengthBytes: 1 }), RangeError);
  for (let i = 2; i <= 4; i++) await client.writeBlock(ref(i), new Uint8Array([i]));
  await assert.rejects(client.writeBlock(ref(5), new Uint8Array([5])), OutOfSpaceError);
  await store.close();
  await assert.rejects(client.readBlock(ref(1)), PeerUnavailableError, "a closed store");
});

Deno.test("MemoryTransport: partition() fails calls until heal(); nobody listening fails too", async () => {
  const { transport, store } = setup();
  const client = transport.dial("mem://a");
  await assert.rejects(client.flush(), PeerUnavailableError, "nobody listens yet");
  await transport.listen("mem://a", store);
  await client.writeBlock(ref(1), new Uint8Array([1]));
  transport.partition("mem://a");
  assert.ok(transport.isPartitioned("mem://a"));
  await assert.rejects(client.readBlock(ref(1)), PeerUnavailableError);
  await assert.rejects(client.writeBlock(ref(2), new Uint8Array([1])), PeerUnavailableError);
  assert.equal(store.usedBlocks(), 1, "a partitioned call does not reach the store");
  transport.heal("mem://a");
  assert.equal((await client.readBlock(ref(1))).data[0], 1);
});

Deno.test("MemoryTransport: latency runs on the clock; a timeout gives PeerUnavailableError", async () => {
  const { clock, transport, store } = setup({ latencyMs: 10 });
  await transport.listen("mem://a", store);
  const client = transport.dial("mem://a");
  let done = false;
  const writing = client.writeBlock(ref(1), new Uint8Array([1])).then(() => done = true);
  await settle();
  assert.equal(done, false);
  clock.advance(9);
  await settle();
  assert.equal(done, false);
  clock.advance(1);
  await writing;
  assert.equal(store.usedBlocks(), 1);
  transport.setLatency("mem://a", Infinity);
  const hung = client.readBlock(ref(1), undefined, { timeoutMs: 500 });
  clock.advance(499);
  await settle();
  clock.advance(1);
  await assert.rejects(hung, PeerUnavailableError);
  transport.setLatency("mem://a", undefined);
  const read = client.readBlock(ref(1), undefined, { timeoutMs: 500 });
  clock.advance(10);
  assert.equal((await read).data[0], 1);
});

Deno.test("MemoryTransport: a reply in flight is lost when the node is partitioned or dropped", async () => {
  const { clock, transport, store } = setup();
  await transport.listen("mem://a", store);
  const client = transport.dial("mem://a");
  transport.setLatency("mem://a", 5);
  const writing = client.writeBlock(ref(1), new Uint8Array([1]));
  await settle();
  transport.drop("mem://a");
  clock.advance(5);
  await assert.rejects(writing, PeerUnavailableError);
  assert.equal(store.usedBlocks(), 0, "a dropped node never received the request");
  // The node restarts with its store: calls work again.
  await transport.listen("mem://a", store);
  transport.setLatency("mem://a", 0);
  await client.writeBlock(ref(1), new Uint8Array([1]));
  assert.equal(store.usedBlocks(), 1);
});

Deno.test("MemoryTransport: client close() fails pending and later calls", async () => {
  const { clock, transport, store } = setup();
  await transport.listen("mem://a", store);
  transport.setLatency("mem://a", Infinity);
  const client = transport.dial("mem://a");
  const pending = client.readBlock(ref(1));
  await client.close();
  await assert.rejects(pending, PeerUnavailableError);
  await assert.rejects(client.flush(), PeerUnavailableError);
  clock.advance(1000);
  // Other clients are not affected.
  transport.setLatency("mem://a", 0);
  await transport.dial("mem://a").flush();
});

Deno.test("MemoryTransport: listener close() waits for calls in flight, then refuses", async () => {
  const { clock, transport } = setup();
  class SlowStore extends MemoryBlockStore {
    override flush(): Promise<void> {
      return clock.sleep(50);
    }
  }
  const slow = new SlowStore({ blockSizeBytes: BLOCK, numBlocks: 1 });
  const listener = await transport.listen("mem://a", slow);
  const client = transport.dial("mem://a");
  let flushed = false;
  const flushing = client.flush().then(() => flushed = true, () => flushed = true);
  await settle();
  let closed = false;
  const closing = listener.close().then(() => closed = true);
  await settle();
  assert.equal(closed, false, "close waits for the flush in flight");
  clock.advance(50);
  await closing;
  await flushing;
  assert.ok(flushed);
  await assert.rejects(client.flush(), PeerUnavailableError);
});

Deno.test("MemoryTransport: addresses are mem://names; :0 picks a free one; one listener per address", async () => {
  const { transport, store } = setup();
  assert.throws(() => transport.dial("tdp://127.0.0.1:40000"), RangeError);
  assert.throws(() => transport.dial("mem://"), RangeError);
  await assert.rejects(transport.listen("http://x", store), RangeError);
  const first = await transport.listen("mem://node:0", store);
  const second = await transport.listen("mem://node:0", store);
  assert.match(first.address, /^mem:\/\/node:\d+$/);
  assert.notEqual(first.address, second.address);
  await assert.rejects(transport.listen(first.address, store), Deno.errors.AddrInUse);
  await transport.dial(second.address).flush();
});

Deno.test("MemoryTransport: a call that timed out is still delivered, as a request on the wire", async () => {
  const { clock, transport, store } = setup({ latencyMs: 10 });
  await transport.listen("mem://a", store);
  const client = transport.dial("mem://a");
  const writing = client.writeBlock(ref(1), new Uint8Array([1]), { timeoutMs: 5 });
  clock.advance(5);
  await assert.rejects(writing, PeerUnavailableError);
  assert.equal(store.usedBlocks(), 0);
  clock.advance(5);
  await settle();
  assert.equal(store.usedBlocks(), 1, "the request landed after the caller gave up");
});

Deno.test("MemoryTransport: a cluster block size checks arguments even for an unreachable peer", async () => {
  const clock = new ManualClock(0);
  assert.throws(() => new MemoryTransport({ clock, blockSizeBytes: 5000 }), RangeError);
  const transport = new MemoryTransport({ clock, blockSizeBytes: BLOCK });
  assert.equal(transport.blockSizeBytes, BLOCK);
  await assert.rejects(
    transport.listen(
      "mem://big",
      new MemoryBlockStore({ blockSizeBytes: 2 * BLOCK, numBlocks: 1 }),
    ),
    RangeError,
    "a store of another block size",
  );
  const client = transport.dial("mem://nobody");
  await assert.rejects(
    client.readBlock(ref(1), { offsetBytes: BLOCK, lengthBytes: 1 }),
    RangeError,
  );
  await assert.rejects(client.writeBlock(ref(1), new Uint8Array(BLOCK + 1)), RangeError);
  await assert.rejects(client.writeBlockRange(ref(1), BLOCK, new Uint8Array(1)), RangeError);
  await assert.rejects(client.flush({ timeoutMs: 0 }), RangeError);
  // Good arguments get as far as the network.
  await assert.rejects(client.readBlock(ref(1)), PeerUnavailableError);
});

Deno.test("MemoryTransport: without one, a client checks against the store listening there", async () => {
  const { transport } = setup();
  const small = new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 1 });
  const large = new MemoryBlockStore({ blockSizeBytes: 4 * BLOCK, numBlocks: 1 });
  await transport.listen("mem://small", small);
  await transport.listen("mem://large", large);
  const toSmall = transport.dial("mem://small");
  const toLarge = transport.dial("mem://large");
  await assert.rejects(toSmall.writeBlock(ref(1), new Uint8Array(BLOCK + 1)), RangeError);
  await toLarge.writeBlock(ref(1), new Uint8Array(BLOCK + 1));
  assert.equal(small.usedBlocks(), 0);
  assert.equal(large.usedBlocks(), 1);
  // Nobody listens: the block size is unknown, the call cannot go anywhere anyway.
  const toNobody = transport.dial("mem://nobody");
  await assert.rejects(toNobody.writeBlock(ref(1), new Uint8Array(1)), PeerUnavailableError);
  // Checks that need no block size still come first.
  await assert.rejects(toNobody.flush({ timeoutMs: -1 }), RangeError);
  await assert.rejects(
    toNobody.writeBlockRange(ref(1), -1, new Uint8Array(1)),
    PeerUnavailableError,
    "the range needs the block size",
  );
});

/** A store whose writes wait until {@linkcode GatedStore.open} is called. */
class GatedStore extends MemoryBlockStore {
  #gate = Promise.withResolvers<void>();
  /** Writes waiting at the gate. */
  waiting = 0;

  open(): void {
    this.#gate.resolve();
  }

  override async writeBlock(r: BlockRef, data: Uint8Array): Promise<Uint32Array> {
    this.waiting++;
    await this.#gate.promise;
    this.waiting--;
    return await super.writeBlock(r, data);
  }
}

Deno.test("MemoryTransport: a closing listener frees its address and still replies; drop() loses the replies", async () => {
  const { transport } = setup();
  const first = new GatedStore({ blockSizeBytes: BLOCK, numBlocks: 2 });
  const listener = await transport.listen("mem://a", first);
  const client = transport.dial("mem://a");
  const writing = client.writeBlock(ref(1), new Uint8Array([1]));
  await settle();
  assert.equal(first.waiting, 1);
  let closed = false;
  const closing = listener.close().then(() => closed = true);
  await settle();
  assert.equal(closed, false, "close() waits for the write in flight");
  assert.equal(listener.close(), listener.close(), "close() twice is one close");
  await assert.rejects(client.flush(), PeerUnavailableError, "no new calls while closing");

  // The address is free at once: a new node listens there while the old one finishes.
  const second = new GatedStore({ blockSizeBytes: BLOCK, numBlocks: 2 });
  const relistened = await transport.listen("mem://a", second);
  const toSecond = client.writeBlock(ref(2), new Uint8Array([2]));
  await settle();
  assert.equal(second.waiting, 1, "new calls reach the new node");

  first.open();
  await writing;
  await closing;
  assert.equal((await first.readBlock(ref(1))).data[0], 1);
  assert.equal(first.usedBlocks(), 1, "the call after close() never reached the old store");

  // Killing a node while its listener closes loses the replies of its calls in flight.
  const closingSecond = relistened.close();
  await assert.rejects(client.writeBlock(ref(3), new Uint8Array([3])), PeerUnavailableError);
  transport.drop("mem://a");
  second.open();
  await assert.rejects(toSecond, PeerUnavailableError, "the reply was lost");
  await closingSecond;
  assert.deepEqual(second.blockRefs(), [ref(2)], "the store applied the write in flight");
});

Deno.test("MemoryTransport: a read asks for whole sectors; lying or malformed replies never pass", async () => {
  const sectorBlock = 4 * BLOCK; // four 4 KiB sectors
  let mode: "honest" | "short" | "lie" = "honest";
  const ranges: (BlockRange | undefined)[] = [];
  class LyingStore extends MemoryBlockStore {
    override async readBlock(r: BlockRef, range?: BlockRange): Promise<BlockRead> {
      ranges.push(range);
      const read = await super.readBlock(r, range);
      return mode === "short" ? { ...read, data: read.data.subarray(1) } : read;
    }
    override async writeBlockRange(
      r: BlockRef,
      offsetBytes: number,
      data: Uint8Array,
      expectDigest?: number,
    ): Promise<Uint32Array> {
      const crcs = await super.writeBlockRange(r, offsetBytes, data, expectDigest);
      if (mode === "short") return crcs.subarray(1);
      if (mode === "lie") crcs[1]! ^= 1;
      return crcs;
    }
  }
  const { transport } = setup();
  const store = new LyingStore({ blockSizeBytes: sectorBlock, numBlocks: 1 });
  await transport.listen("mem://a", store);
  const client = transport.dial("mem://a");
  const data = new Uint8Array(sectorBlock).map((_, i) => i * 7);
  await client.writeBlock(ref(1), data);
  const part = await client.readBlock(ref(1), { offsetBytes: 5000, lengthBytes: 10 });
  assert.deepEqual(part.data, data.subarray(5000, 5010));
  assert.deepEqual(ranges.at(-1), { offsetBytes: BLOCK, lengthBytes: BLOCK });
  assert.deepEqual(
    await client.writeBlockRange(ref(1), BLOCK, new Uint8Array(BLOCK)),
    (await store.readBlock(ref(1))).sectorCrcs,
  );

  mode = "short";
  await assert.rejects(
    client.readBlock(ref(1), { offsetBytes: 0, lengthBytes: 1 }),
    PeerUnavailableError,
  );
  await assert.rejects(client.writeBlockRange(ref(1), 0, new Uint8Array(1)), PeerUnavailableError);
  mode = "lie";
  await assert.rejects(
    client.writeBlockRange(ref(1), BLOCK, new Uint8Array(BLOCK)),
    BlockCorruptError,
    "the CRC of a sector written whole does not match the data sent",
  );
  // Only sectors the data covers whole can be checked: a write inside sector 1 passes.
  await client.writeBlockRange(ref(1), BLOCK + 1, new Uint8Array(1));
});

testTransport("memory", () => {
  const transport = new MemoryTransport({ clock: new SystemClock() });
  let next = 0;
  return { transport, listenAddress: () => `mem://conformance-${next++}` };
});

// Again with the cluster block size given, as the TCP transport always has it.
testTransport("memory with a cluster block size", ({ blockSizeBytes }) => {
  const transport = new MemoryTransport({ clock: new SystemClock(), blockSizeBytes });
  let next = 0;
  return { transport, listenAddress: () => `mem://sized-${next++}` };
});
