import assert from "node:assert/strict";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { crc32 } from "../core/crc32.ts";
import type { Logger } from "../log.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { HookedStore } from "./_hooked_store.ts";
import { encodeFrame, RawPeer } from "./_raw_peer.ts";
import {
  decodeBitset,
  decodeCrcList,
  decodeMessage,
  encodeFrameHeader,
  encodeHello,
  encodeRefList,
  frameHeader,
  HelloStatus,
  PEER_FLAG_EXPECT_DIGEST,
  PEER_PROTOCOL_VERSION,
  PeerOp,
  PeerStatus,
  requestPayloadBytesMax,
} from "./frame.ts";
import { PeerServer, type PeerServerLimits } from "./peer_server.ts";
import { requestCostBytesMax } from "./server_connection.ts";

const BLOCK = 16384;
const REF = new BlockRef(2, BlockType.data, 3, 4);

function start(limits: Partial<PeerServerLimits> = {}, numBlocks = 64) {
  const store = new HookedStore(new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks }));
  const logs: string[] = [];
  const logger: Logger = { log: (level, message) => logs.push(`${level} ${message}`) };
  const server = PeerServer.listen({ store, port: 0, logger, limits });
  return { server, store, logs };
}

async function connected(server: PeerServer): Promise<RawPeer> {
  const peer = await RawPeer.connect(server.port);
  const hello = await peer.hello(BLOCK);
  assert.equal(hello.status, HelloStatus.ok);
  return peer;
}

const until = async (condition: () => boolean, what: string) => {
  for (let i = 0; i < 1000; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
};

/** A well-behaved exchange: write, read back, ping. */
async function stillServes(server: PeerServer, index: number): Promise<void> {
  const peer = await connected(server);
  try {
    const ref = new BlockRef(9, BlockType.data, 9, index);
    const data = new Uint8Array(BLOCK).fill(index & 0xff);
    await peer.request({ requestId: 1, op: PeerOp.write, ref: ref.toBytes() }, data);
    assert.equal((await peer.reply()).header.status, PeerStatus.ok);
    await peer.request({
      requestId: 2,
      op: PeerOp.read,
      ref: ref.toBytes(),
      offsetBytes: 4096,
      lengthBytes: 4096,
    });
    const { header, payload } = await peer.reply();
    assert.equal(header.status, PeerStatus.ok);
    assert.deepEqual(payload.subarray(16), data.subarray(4096, 8192));
  } finally {
    peer.close();
  }
}

Deno.test("peer server: listens on an ephemeral port and closes cleanly", async () => {
  const { server } = start();
  assert.ok(server.port > 0);
  assert.equal(server.address, `tdp://127.0.0.1:${server.port}`);
  assert.deepEqual(server.stats(), { connections: 0, requestsInFlight: 0, bufferedBytes: 0 });
  await server.close();
  await server.close();
  await assert.rejects(() => Deno.connect({ port: server.port }), Deno.errors.ConnectionRefused);
});

Deno.test("peer server: limits are checked against the block size", () => {
  const store = new MemoryBlockStore({ blockSizeBytes: 16 * 1024 * 1024, numBlocks: 1 });
  assert.throws(
    () => PeerServer.listen({ store, port: 0, limits: { bufferedBytesMax: 16 * 1024 * 1024 } }),
    RangeError,
  );
  assert.throws(
    () => PeerServer.listen({ store, port: 0, limits: { connectionsMax: 0 } }),
    RangeError,
  );
  assert.throws(() => PeerServer.listen({ store, port: 0, nodeUuid: "nope" }), TypeError);
  assert.equal(requestCostBytesMax(16 * 1024 * 1024), 16 * 1024 * 1024 + 4096 * 4);
});

Deno.test("peer server: serves every op to a raw client", async () => {
  const { server, store } = start();
  const peer = await connected(server);
  try {
    const data = new Uint8Array(BLOCK).map((_, i) => i * 7);
    await peer.request({ requestId: 10, op: PeerOp.write, ref: REF.toBytes() }, data);
    let reply = await peer.reply();
    assert.equal(reply.header.requestId, 10);
    assert.equal(reply.header.status, PeerStatus.ok);
    assert.deepEqual(reply.header.ref, REF.toBytes(), "the reply echoes the ref");

    await peer.request({ requestId: 11, op: PeerOp.read, ref: REF.toBytes(), lengthBytes: BLOCK });
    reply = await peer.reply();
    assert.equal(reply.header.arg, 4);
    const crcs = decodeCrcList(reply.payload.subarray(0, 16));
    assert.equal(crcs[1], crc32(data.subarray(4096, 8192)));
    assert.deepEqual(reply.payload.subarray(16), data);
    assert.equal(reply.header.payloadCrc, crc32(reply.payload));

    await peer.request(
      {
        requestId: 12,
        op: PeerOp.writeRange,
        ref: REF.toBytes(),
        offsetBytes: 8192,
        flags: PEER_FLAG_EXPECT_DIGEST,
        arg: 1,
      },
      new Uint8Array(10),
    );
    reply = await peer.reply();
    assert.equal(reply.header.status, PeerStatus.corrupt, "a wrong digest");
    assert.match(decodeMessage(reply.payload), /expected digest/);

    await peer.request(
      { requestId: 13, op: PeerOp.hasBlocks, lengthBytes: 2 },
      encodeRefList([REF, new BlockRef(2, 0, 3, 5)]),
    );
    reply = await peer.reply();
    assert.deepEqual(decodeBitset(reply.payload, 2), [true, false]);

    await peer.request({ requestId: 14, op: PeerOp.delete, ref: REF.toBytes() });
    assert.equal((await peer.reply()).header.arg, 1);
    await peer.request({ requestId: 15, op: PeerOp.delete, ref: REF.toBytes() });
    assert.equal((await peer.reply()).header.arg, 0);
    await peer.request({ requestId: 16, op: PeerOp.read, ref: REF.toBytes(), lengthBytes: 4096 });
    reply = await peer.reply();
    assert.equal(reply.header.status, PeerStatus.notFound);
    await peer.request({ requestId: 17, op: PeerOp.flush });
    assert.equal((await peer.reply()).header.status, PeerStatus.ok);
    await peer.request({ requestId: 18, op: PeerOp.ping });
    assert.equal((await peer.reply()).header.status, PeerStatus.ok);
    assert.ok(store.calls.includes("flush"));
  } finally {
    peer.close();
    await server.close();
  }
});

Deno.test("peer server: a refused hello says why, then closes", async () => {
  const { server } = start();
  try {
    let peer = await RawPeer.connect(server.port);
    let hello = await peer.hello(BLOCK * 2);
    assert.equal(hello.status, HelloStatus.blockSizeMismatch);
    assert.equal(hello.blockSizeBytes, BLOCK);
    assert.ok(await peer.closedByPeer());
    peer.close();

    peer = await RawPeer.connect(server.port);
    hello = await peer.hello(BLOCK, { versionMin: 7, versionMax: 9 });
    assert.equal(hello.status, HelloStatus.versionUnsupported);
    assert.equal(hello.versionMax, PEER_PROTOCOL_VERSION);
    assert.ok(await peer.closedByPeer());
    peer.close();

    for (
      const noise of [
        new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2)),
        encodeHello({
          versionMin: 1,
          versionMax: 1,
          status: 0,
          blockSizeBytes: BLOCK,
          requestsInFlightMax: 1,
          nodeUuid: new Uint8Array(16),
        }).map((b, i) => i === 42 ? b ^ 1 : b),
      ]
    ) {
      peer = await RawPeer.connect(server.port);
      await peer.send(noise);
      assert.ok(await peer.closedByPeer(), "no answer to noise, just a close");
      peer.close();
    }
    await stillServes(server, 1);
  } finally {
    await server.close();
  }
});

Deno.test("peer server: a bad request gets BAD_REQUEST and the connection goes on", async () => {
  const { server, store } = start();
  const peer = await connected(server);
  try {
    // Unknown op with a payload: the payload is skipped, framing holds.
    await peer.request({ requestId: 1, op: 42 }, new Uint8Array(5000).fill(0xee));
    let reply = await peer.reply();
    assert.equal(reply.header.status, PeerStatus.badRequest);
    assert.equal(reply.header.requestId, 1);
    assert.equal(reply.header.op, 42);
    assert.match(decodeMessage(reply.payload), /unknown op 42/);
    // An unaligned read, a write too long, a range past the block, a bad ref.
    const badRef = REF.toBytes();
    badRef[7] = 5;
    for (
      const fields of [
        { op: PeerOp.read, ref: REF.toBytes(), offsetBytes: 1, lengthBytes: 4096 },
        { op: PeerOp.writeRange, ref: REF.toBytes(), offsetBytes: BLOCK - 1 },
        { op: PeerOp.delete, ref: badRef },
        { op: PeerOp.ping, flags: 0x40 },
      ]
    ) {
      await peer.request(
        { requestId: 2, ...fields },
        fields.op === PeerOp.writeRange ? new Uint8Array(2) : undefined,
      );
      reply = await peer.reply();
      assert.equal(reply.header.status, PeerStatus.badRequest, JSON.stringify(fields));
    }
    await peer.request(
      { requestId: 3, op: PeerOp.write, ref: REF.toBytes() },
      new Uint8Array(BLOCK),
    );
    assert.equal((await peer.reply()).header.status, PeerStatus.ok);
    assert.deepEqual(store.calls, ["writeBlock"], "refused requests never reach the store");
  } finally {
    peer.close();
    await server.close();
  }
});

Deno.test("peer server: a damaged payload is refused, never stored", async () => {
  const { server, store } = start();
  const peer = await connected(server);
  try {
    const data = new Uint8Array(BLOCK).fill(1);
    await peer.request(
      { requestId: 1, op: PeerOp.write, ref: REF.toBytes(), payloadCrc: crc32(data) ^ 1 },
      data,
    );
    const reply = await peer.reply();
    assert.equal(reply.header.status, PeerStatus.damaged);
    assert.equal(store.usedBlocks(), 0);
    await peer.request({ requestId: 2, op: PeerOp.ping });
    assert.equal((await peer.reply()).header.status, PeerStatus.ok);
  } finally {
    peer.close();
    await server.close();
  }
});

Deno.test("peer server: framing errors close that connection only", async () => {
  const { server, logs } = start();
  try {
    const cases: [string, Uint8Array][] = [
      [
        "header checksum",
        encodeFrame({ requestId: 1, op: PeerOp.ping }).map((b, i) => i === 3 ? b ^ 1 : b),
      ],
      [
        "huge payload",
        encodeFrameHeader(frameHeader({
          requestId: 1,
          op: PeerOp.write,
          ref: REF.toBytes(),
          payloadBytes: requestPayloadBytesMax(BLOCK) + 1,
        })),
      ],
      [
        "payload 4 GiB",
        encodeFrameHeader(
          frameHeader({ requestId: 1, op: PeerOp.write, payloadBytes: 0xffff_ffff }),
        ),
      ],
    ];
    for (const [what, bytes] of cases) {
      const other = await connected(server);
      const peer = await connected(server);
      await peer.send(bytes);
      assert.ok(await peer.closedByPeer(), what);
      peer.close();
      await other.request({ requestId: 5, op: PeerOp.ping });
      assert.equal((await other.reply()).header.status, PeerStatus.ok, `${what}: others go on`);
      other.close();
    }
    assert.ok(logs.some((line) => line.includes("header checksum mismatch")));
    await stillServes(server, 2);
    await until(() => server.stats().connections === 0, "connections to close");
    assert.equal(server.stats().bufferedBytes, 0);
  } finally {
    await server.close();
  }
});

Deno.test("peer server: a request id reused while in flight closes the connection", async () => {
  const { server, store, logs } = start();
  const peer = await connected(server);
  try {
    await store.inner.writeBlock(REF, new Uint8Array(1));
    store.gated.add(REF.key());
    await peer.request({ requestId: 7, op: PeerOp.read, ref: REF.toBytes(), lengthBytes: 4096 });
    await store.untilWaiting(1);
    await peer.request({ requestId: 7, op: PeerOp.ping });
    await until(() => logs.some((line) => line.includes("already in flight")), "the duplicate");
    store.open();
    assert.ok(await peer.closedByPeer());
  } finally {
    peer.close();
    await server.close();
  }
});

Deno.test("peer server: replies go out as requests complete, within the in-flight bound", async () => {
  const { server, store } = start({ requestsInFlightMax: 4 });
  const peer = await connected(server);
  try {
    await store.inner.writeBlock(REF, new Uint8Array(BLOCK).fill(3));
    store.gated.add(REF.key());
    await peer.request({ requestId: 1, op: PeerOp.read, ref: REF.toBytes(), lengthBytes: 4096 });
    await peer.request({ requestId: 2, op: PeerOp.ping });
    const first = await peer.reply();
    assert.equal(first.header.requestId, 2, "the ping overtakes the gated read");
    for (let id = 3; id < 13; id++) {
      await peer.request({ requestId: id, op: PeerOp.delete, ref: REF.toBytes() });
    }
    await store.untilWaiting(4);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(store.waiting, 4, "no more than 4 requests reach the store");
    assert.equal(server.stats().requestsInFlight, 4);
    store.open();
    const ids = [];
    for (let i = 0; i < 11; i++) ids.push((await peer.reply()).header.requestId);
    assert.deepEqual(ids.sort((a, b) => a - b), [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  } finally {
    peer.close();
    await server.close();
  }
});

Deno.test("peer server: bytes held stay within the connection's budget", async () => {
  const budget = requestCostBytesMax(BLOCK);
  const fit = Math.floor(budget / BLOCK);
  const { server, store } = start({ bufferedBytesMax: budget });
  const peer = await connected(server);
  try {
    store.gated.add(REF.key());
    const frames = [];
    for (let id = 1; id <= fit * 3; id++) {
      frames.push(
        encodeFrame({ requestId: id, op: PeerOp.write, ref: REF.toBytes() }, new Uint8Array(BLOCK)),
      );
    }
    const sending = peer.send(new Uint8Array(frames.flatMap((frame) => [...frame])));
    await store.untilWaiting(fit);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(
      server.stats().bufferedBytes <= budget,
      `${server.stats().bufferedBytes} > ${budget}`,
    );
    assert.equal(store.waiting, fit, "reading stops at the byte budget");
    store.open();
    await sending;
    for (let i = 0; i < fit * 3; i++) {
      assert.equal((await peer.reply()).header.status, PeerStatus.ok);
    }
    await until(() => server.stats().bufferedBytes === 0, "bytes to be released");
  } finally {
    peer.close();
    await server.close();
  }
});

Deno.test("peer server: the connection cap refuses with a busy hello", async () => {
  const { server } = start({ connectionsMax: 2 });
  try {
    const first = await connected(server);
    const second = await connected(server);
    const third = await RawPeer.connect(server.port);
    assert.equal((await third.hello(BLOCK)).status, HelloStatus.busy);
    assert.ok(await third.closedByPeer());
    third.close();
    first.close();
    await until(() => server.stats().connections === 1, "a slot to free up");
    const fourth = await connected(server);
    second.close();
    fourth.close();
  } finally {
    await server.close();
  }
});

Deno.test("peer server: silent and idle clients are dropped", async () => {
  const { server, logs } = start({ handshakeTimeoutMs: 100, idleTimeoutMs: 150 });
  try {
    const started = Date.now();
    const silent = await RawPeer.connect(server.port);
    const idle = await connected(server);
    assert.ok(await silent.closedByPeer());
    assert.ok(Date.now() - started >= 90);
    assert.ok(await idle.closedByPeer());
    assert.ok(Date.now() - started >= 140);
    silent.close();
    idle.close();
    assert.ok(logs.some((line) => line.includes("hello timed out")));
  } finally {
    await server.close();
  }
});

Deno.test("peer server: a client that stops reading is dropped and its bytes freed", async () => {
  const { server, store } = start({ writeStallTimeoutMs: 200 });
  const peer = await connected(server);
  try {
    await store.inner.writeBlock(REF, new Uint8Array(BLOCK));
    // Ask for far more than the socket buffers hold, and never read.
    const frames = [];
    for (let id = 1; id <= 1000; id++) {
      frames.push(
        encodeFrame({ requestId: id, op: PeerOp.read, ref: REF.toBytes(), lengthBytes: BLOCK }),
      );
    }
    await peer.send(new Uint8Array(frames.flatMap((frame) => [...frame])));
    await until(() => server.stats().connections === 0, "the stalled connection to close");
    assert.equal(server.stats().bufferedBytes, 0);
    assert.equal(server.stats().requestsInFlight, 0);
  } finally {
    peer.close();
    await server.close();
  }
});

Deno.test("peer server: close() answers requests in flight, refuses new ones", async () => {
  const { server, store } = start();
  const peer = await connected(server);
  try {
    await store.inner.writeBlock(REF, new Uint8Array(1));
    store.gated.add(REF.key());
    await peer.request({ requestId: 1, op: PeerOp.read, ref: REF.toBytes(), lengthBytes: 4096 });
    await store.untilWaiting(1);
    const closing = server.close();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await peer.request({ requestId: 2, op: PeerOp.ping });
    const refused = await peer.reply();
    assert.equal(refused.header.requestId, 2);
    assert.equal(refused.header.status, PeerStatus.shuttingDown);
    store.open();
    const answered = await peer.reply();
    assert.equal(answered.header.requestId, 1);
    assert.equal(answered.header.status, PeerStatus.ok);
    await closing;
    assert.ok(await peer.closedByPeer());
  } finally {
    peer.close();
    await server.close();
  }
});
