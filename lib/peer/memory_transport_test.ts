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

testTransport("memory", () => {
  const transport = new MemoryTransport({ clock: new SystemClock() });
  let next = 0;
  return { transport, listenAddress: () => `mem://conformance-${next++}` };
});
