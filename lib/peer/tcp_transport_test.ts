import assert from "node:assert/strict";
import { BLOCK_SIZE_BYTES_MAX } from "../constants.ts";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { BlockCorruptError, PeerUnavailableError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { Prng } from "../prng.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { HookedStore } from "./_hooked_store.ts";
import { RawPeer } from "./_raw_peer.ts";
import { testTransport } from "./_transport_conformance.ts";
import {
  decodeFrameHeader,
  encodeFrameHeader,
  encodeHello,
  encodeNodeUuid,
  frameHeader,
  PEER_FRAME_HEADER_BYTES,
  PEER_HELLO_BYTES,
  PEER_PROTOCOL_VERSION,
  PeerOp,
} from "./frame.ts";
import { TcpTransport, type TcpTransportOptions } from "./tcp_transport.ts";

testTransport("tcp", ({ blockSizeBytes }) => ({
  transport: new TcpTransport({ blockSizeBytes }),
  listenAddress: () => "tdp://127.0.0.1:0",
}));

const BLOCK = 16384;
const REF = new BlockRef(4, BlockType.data, 5, 6);
const prng = new Prng(0x7cb);

/** A transport, a served hooked memory store and one client. */
async function serve(options: Partial<TcpTransportOptions> = {}, numBlocks = 16) {
  const logs: string[] = [];
  const logger: Logger = { log: (level, message) => logs.push(`${level} ${message}`) };
  const transport = new TcpTransport({ blockSizeBytes: BLOCK, logger, ...options });
  const store = new HookedStore(
    new MemoryBlockStore({ blockSizeBytes: options.blockSizeBytes ?? BLOCK, numBlocks }),
  );
  const listener = await transport.listen("tdp://127.0.0.1:0", store);
  const client = transport.dial(listener.address);
  return {
    transport,
    store,
    listener,
    client,
    logs,
    async close() {
      store.open();
      await client.close();
      await listener.close();
      await store.close();
    },
  };
}

/** A TCP server that runs `script` on every connection it accepts. */
function fakePeer(script: (peer: RawPeer, index: number) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tasks = new Set<Promise<void>>();
  let accepted = 0;
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        const peer = new RawPeer(conn);
        const task = script(peer, accepted++).catch(() => {}).finally(() => peer.close());
        tasks.add(task);
      }
    } catch {
      // Closed.
    }
  })();
  return {
    address: `tdp://127.0.0.1:${listener.addr.port}`,
    get accepted() {
      return accepted;
    },
    async close() {
      listener.close();
      await loop;
      await Promise.all(tasks);
    },
  };
}

/** The server side of a successful hello. */
async function answerHello(peer: RawPeer, blockSizeBytes = BLOCK): Promise<void> {
  await peer.receive(PEER_HELLO_BYTES);
  await peer.send(encodeHello({
    versionMin: PEER_PROTOCOL_VERSION,
    versionMax: PEER_PROTOCOL_VERSION,
    status: 0,
    blockSizeBytes,
    requestsInFlightMax: 64,
    nodeUuid: encodeNodeUuid(),
  }));
}

/**
 * A TCP proxy to `port` that passes bytes through `mutate` (direction,
 * connection number, stream offset of the chunk, the chunk).
 */
function proxy(
  port: number,
  mutate: (direction: "up" | "down", connection: number, offset: number, chunk: Uint8Array) => void,
) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tasks = new Set<Promise<void>>();
  const pump = async (
    from: Deno.Conn,
    to: Deno.Conn,
    direction: "up" | "down",
    connection: number,
  ) => {
    const buffer = new Uint8Array(64 * 1024);
    let offset = 0;
    try {
      for (;;) {
        const count = await from.read(buffer);
        if (count === null) break;
        const chunk = buffer.slice(0, count);
        mutate(direction, connection, offset, chunk);
        offset += count;
        for (let at = 0; at < chunk.length;) at += await to.write(chunk.subarray(at));
      }
    } catch {
      // Either end went away.
    }
    for (const conn of [from, to]) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  };
  let connections = 0;
  const loop = (async () => {
    try {
      for await (const down of listener) {
        const up = await Deno.connect({ hostname: "127.0.0.1", port });
        const index = connections++;
        const task = Promise.all([
          pump(down, up, "up", index),
          pump(up, down, "down", index),
        ]).then(() => {});
        tasks.add(task);
      }
    } catch {
      // Closed.
    }
  })();
  return {
    address: `tdp://127.0.0.1:${listener.addr.port}`,
    async close() {
      listener.close();
      await loop;
      await Promise.all(tasks);
    },
  };
}

Deno.test("tcp: nodes with different block sizes refuse each other", async () => {
  const served = await serve();
  const other = new TcpTransport({ blockSizeBytes: BLOCK * 2 }).dial(served.listener.address);
  try {
    await assert.rejects(other.flush(), (error: Error) => {
      assert.ok(error instanceof PeerUnavailableError);
      assert.match(
        error.message,
        /blocks of 16384 bytes, this node 32768: they are not in the same cluster/,
      );
      return true;
    });
    await served.client.flush();
  } finally {
    await other.close();
    await served.close();
  }
});

Deno.test("tcp: bad arguments to the transport are refused up front", async () => {
  const transport = new TcpTransport({ blockSizeBytes: BLOCK });
  const store = new MemoryBlockStore({ blockSizeBytes: BLOCK * 2, numBlocks: 1 });
  await assert.rejects(transport.listen("tdp://127.0.0.1:0", store), RangeError);
  await assert.rejects(
    transport.listen(
      "http://127.0.0.1:0",
      new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: 1 }),
    ),
    TypeError,
  );
  assert.throws(() => transport.dial("tdp://127.0.0.1:0"), RangeError);
  assert.throws(() => transport.dial("127.0.0.1:40000"), TypeError);
  for (const blockSizeBytes of [0, 100, 5000, BLOCK_SIZE_BYTES_MAX * 2, 1.5]) {
    assert.throws(() => new TcpTransport({ blockSizeBytes }), RangeError, `${blockSizeBytes}`);
  }
  assert.throws(() => new TcpTransport({ blockSizeBytes: BLOCK, nodeUuid: "x" }), TypeError);
  assert.throws(
    () => new TcpTransport({ blockSizeBytes: BLOCK, clientLimits: { readTimeoutMs: 0 } }),
    RangeError,
  );
  await store.close();
});

Deno.test("tcp: listening on a port in use fails", async () => {
  const served = await serve();
  try {
    await assert.rejects(
      served.transport.listen(served.listener.address, served.store),
      Deno.errors.AddrInUse,
    );
  } finally {
    await served.close();
  }
});

Deno.test("tcp: damage on the wire never yields wrong bytes", async () => {
  const served = await serve();
  const data = prng.fill(new Uint8Array(BLOCK));
  await served.store.inner.writeBlock(REF, data);
  const transport = new TcpTransport({ blockSizeBytes: BLOCK });
  const port = Number(served.listener.address.split(":").at(-1));
  // Each case flips one byte of the first connection only.
  const cases: {
    what: string;
    direction: "up" | "down";
    at: number;
    call: (client: ReturnType<TcpTransport["dial"]>) => Promise<unknown>;
    error: new (message: string) => Error;
  }[] = [
    {
      what: "read data",
      direction: "down",
      at: PEER_HELLO_BYTES + PEER_FRAME_HEADER_BYTES + 16 + 100,
      call: (client) => client.readBlock(REF),
      error: BlockCorruptError,
    },
    {
      what: "read sector CRCs",
      direction: "down",
      at: PEER_HELLO_BYTES + PEER_FRAME_HEADER_BYTES + 1,
      call: (client) => client.readBlock(REF, { offsetBytes: 0, lengthBytes: 10 }),
      error: BlockCorruptError,
    },
    {
      what: "reply header",
      direction: "down",
      at: PEER_HELLO_BYTES + 3,
      call: (client) => client.readBlock(REF),
      error: PeerUnavailableError,
    },
    {
      what: "server hello",
      direction: "down",
      at: 20,
      call: (client) => client.readBlock(REF),
      error: PeerUnavailableError,
    },
    {
      what: "write payload",
      direction: "up",
      at: PEER_HELLO_BYTES + PEER_FRAME_HEADER_BYTES + 100,
      call: (client) => client.writeBlock(REF, new Uint8Array(BLOCK).fill(9)),
      error: PeerUnavailableError,
    },
    {
      what: "request header",
      direction: "up",
      at: PEER_HELLO_BYTES + 30,
      call: (client) => client.writeBlock(REF, new Uint8Array(BLOCK).fill(9)),
      error: PeerUnavailableError,
    },
  ];
  try {
    for (const { what, direction, at, call, error } of cases) {
      const wire = proxy(port, (dir, connection, offset, chunk) => {
        if (dir === direction && connection === 0 && at >= offset && at < offset + chunk.length) {
          chunk[at - offset] = chunk[at - offset]! ^ 0x20;
        }
      });
      const client = transport.dial(wire.address);
      try {
        await assert.rejects(call(client), error, what);
        assert.deepEqual(
          (await served.store.inner.readBlock(REF)).data,
          data,
          `${what}: the stored block is intact`,
        );
        // The next calls work (on the same connection, or a new one).
        const read = await (async () => {
          for (let i = 0;; i++) {
            try {
              return await client.readBlock(REF);
            } catch (failure) {
              if (!(failure instanceof PeerUnavailableError) || i > 100) throw failure;
              await new Promise((resolve) => setTimeout(resolve, 20));
            }
          }
        })();
        assert.deepEqual(read.data, data, what);
      } finally {
        await client.close();
        await wire.close();
      }
    }
  } finally {
    await served.close();
  }
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("tcp: a peer that accepts but never answers fails the dial in time; calls do not wait for redials", async () => {
  const silent = fakePeer((peer) => peer.closedByPeer().then(() => {}));
  const transport = new TcpTransport({
    blockSizeBytes: BLOCK,
    clientLimits: { dialTimeoutMs: 150 },
  });
  const client = transport.dial(silent.address);
  try {
    const started = Date.now();
    await assert.rejects(client.flush({ timeoutMs: 5_000 }), /no answer within 150 ms/);
    assert.ok(Date.now() - started < 2_000);
    // Past the redial pause the next call starts a redial, a probe that no call waits for:
    // a peer cut off by the network would otherwise cost every call the whole dial timeout.
    await sleep(60);
    const probing = Date.now();
    await assert.rejects(
      client.flush({ timeoutMs: 5_000 }),
      /unreachable \(reconnecting\): Cannot connect to .*: no answer within 150 ms/,
    );
    await assert.rejects(
      client.readBlock(REF, undefined, { timeoutMs: 5_000 }),
      PeerUnavailableError,
    );
    assert.ok(Date.now() - probing < 100, "calls failed at once while the probe dialled");
    await sleep(200);
    assert.equal(silent.accepted, 2, "one probe");
    // Closing a client while its first dial is in progress fails the call at once.
    const fresh = transport.dial(silent.address);
    const pending = assert.rejects(
      fresh.readBlock(REF, undefined, { timeoutMs: 5_000 }),
      PeerUnavailableError,
    );
    await sleep(20);
    await fresh.close();
    await pending;
  } finally {
    await client.close();
    await silent.close();
  }
});

Deno.test("tcp: a peer that comes back is reached again once a probe connects", async () => {
  const served = await serve();
  const port = Number(served.listener.address.split(":").pop());
  let back: Awaited<ReturnType<TcpTransport["listen"]>> | null = null;
  try {
    await served.client.writeBlock(REF, new Uint8Array([7]));
    await served.listener.close();
    await assert.rejects(served.client.flush(), PeerUnavailableError);
    back = await served.transport.listen(`tdp://127.0.0.1:${port}`, served.store);
    const deadline = Date.now() + 5_000;
    for (;;) {
      try {
        await served.client.flush();
        break;
      } catch (error) {
        assert.ok(error instanceof PeerUnavailableError, String(error));
        assert.ok(Date.now() < deadline, `not reached again: ${error}`);
        await sleep(20);
      }
    }
    assert.equal((await served.client.readBlock(REF)).data[0], 7);
  } finally {
    await back?.close();
    await served.close();
  }
});

Deno.test("tcp: the server's connection cap is reported", async () => {
  const served = await serve({ serverLimits: { connectionsMax: 1 } });
  const second = served.transport.dial(served.listener.address);
  try {
    await served.client.flush();
    await assert.rejects(second.flush(), /connection limit/);
  } finally {
    await second.close();
    await served.close();
  }
});

Deno.test("tcp: keepalives hold an idle connection; without them the client redials", async () => {
  const served = await serve({
    serverLimits: { idleTimeoutMs: 300 },
    clientLimits: { keepaliveIntervalMs: 50 },
  });
  const lazy = new TcpTransport({
    blockSizeBytes: BLOCK,
    clientLimits: { keepaliveIntervalMs: 60_000 },
  }).dial(served.listener.address);
  try {
    await served.client.flush();
    await lazy.flush();
    await new Promise((resolve) => setTimeout(resolve, 800));
    const connects = served.logs.filter((line) => line.includes("connected, version")).length;
    assert.equal(connects, 2, "no connection was dropped and dialled again yet");
    await served.client.flush();
    await lazy.flush(); // The server dropped the idle connection: this one redials.
    const after = served.logs.filter((line) => line.includes("connected, version")).length;
    assert.equal(after, 3);
    assert.ok(served.logs.some((line) => line.includes("idle for 300 ms")));
  } finally {
    await lazy.close();
    await served.close();
  }
});

Deno.test("tcp: an unanswered keepalive drops the connection", async () => {
  const mute = fakePeer(async (peer) => {
    await answerHello(peer);
    await peer.closedByPeer();
  });
  const client = new TcpTransport({
    blockSizeBytes: BLOCK,
    clientLimits: { keepaliveIntervalMs: 50, pingTimeoutMs: 100 },
  }).dial(mute.address);
  try {
    const started = Date.now();
    await assert.rejects(client.flush({ timeoutMs: 10_000 }), /keepalive unanswered/);
    assert.ok(Date.now() - started < 2_000);
  } finally {
    await client.close();
    await mute.close();
  }
});

Deno.test("tcp: a call in flight to a peer gone silent fails after an unanswered PING, not at its own deadline", async () => {
  const mute = fakePeer(async (peer) => {
    await answerHello(peer);
    await peer.closedByPeer();
  });
  const client = new TcpTransport({
    blockSizeBytes: BLOCK,
    clientLimits: { stallProbeMs: 100, pingTimeoutMs: 100 },
  }).dial(mute.address);
  try {
    const started = Date.now();
    await assert.rejects(
      client.flush({ timeoutMs: 10_000 }),
      /keepalive unanswered for 100 ms \(nothing received for \d+ ms before it\)/,
    );
    assert.ok(Date.now() - started < 2_000);
  } finally {
    await client.close();
    await mute.close();
  }
});

Deno.test("tcp: a slow request to a peer that answers PINGs is not taken for a stall", async () => {
  const slow = fakePeer(async (peer) => {
    await answerHello(peer);
    const replies: Promise<void>[] = [];
    try {
      for (;;) {
        const request = decodeFrameHeader(await peer.receive(PEER_FRAME_HEADER_BYTES));
        await peer.receive(request.payloadBytes);
        const reply = encodeFrameHeader(
          frameHeader({ requestId: request.requestId, op: request.op, ref: request.ref }),
        );
        // PINGs at once, anything else (the flush: a slow disk) after 600 ms.
        const wait = request.op === PeerOp.ping ? 0 : 600;
        replies.push(sleep(wait).then(() => peer.send(reply)));
      }
    } finally {
      await Promise.allSettled(replies);
    }
  });
  const client = new TcpTransport({
    blockSizeBytes: BLOCK,
    clientLimits: { stallProbeMs: 100, pingTimeoutMs: 100 },
  }).dial(slow.address);
  try {
    await client.flush({ timeoutMs: 5_000 });
    await client.flush({ timeoutMs: 5_000 });
    assert.equal(slow.accepted, 1, "the connection was kept");
  } finally {
    await client.close();
    await slow.close();
  }
});

Deno.test("tcp: a timed-out call on a silent connection drops it; the next call redials, a probe it does not wait for", async () => {
  const mute = fakePeer(async (peer) => {
    await answerHello(peer);
    await peer.closedByPeer();
  });
  const client = new TcpTransport({ blockSizeBytes: BLOCK }).dial(mute.address);
  try {
    await assert.rejects(client.flush({ timeoutMs: 100 }), /did not answer FLUSH within 100 ms/);
    const started = Date.now();
    await assert.rejects(
      client.flush({ timeoutMs: 5_000 }),
      /unreachable \(reconnecting\): .*nothing received for \d+ ms; the connection is stalled/,
    );
    assert.ok(Date.now() - started < 100, "the call did not wait for the redial");
    for (let i = 0; mute.accepted < 2; i++) {
      assert.ok(i < 100, "the stalled connection was replaced");
      await sleep(10);
    }
  } finally {
    await client.close();
    await mute.close();
  }
});

Deno.test("tcp: a reply that breaks the protocol fails that connection; the client redials", async () => {
  const liar = fakePeer(async (peer, index) => {
    await answerHello(peer);
    for (;;) {
      const request = decodeFrameHeader(await peer.receive(PEER_FRAME_HEADER_BYTES));
      await peer.receive(request.payloadBytes);
      const reply = frameHeader({ requestId: request.requestId, op: request.op, ref: request.ref });
      if (index === 0) reply.requestId += 1000; // Unknown id.
      if (index === 1) reply.payloadBytes = 1 << 30; // Absurd length.
      if (index === 2) reply.op = (request.op + 1) % 7; // Another op.
      await peer.send(encodeFrameHeader(reply));
    }
  });
  const client = new TcpTransport({ blockSizeBytes: BLOCK }).dial(liar.address);
  try {
    for (
      const why of [/unknown request/, /reply of 1073741824 bytes/, /reply to a FLUSH request/]
    ) {
      await assert.rejects(client.flush(), (error: Error) => {
        assert.ok(error instanceof PeerUnavailableError, String(error));
        assert.match(error.message, why);
        return true;
      });
    }
    await client.flush();
    assert.equal(liar.accepted, 4);
  } finally {
    await client.close();
    await liar.close();
  }
});

Deno.test("tcp: calls in flight are bounded, and so is the queue behind them", async () => {
  const served = await serve({ clientLimits: { requestsInFlightMax: 2, queuedCallsMax: 3 } });
  try {
    await served.client.writeBlock(REF, new Uint8Array([5]));
    served.store.gated.add(REF.key());
    const calls = Array.from({ length: 5 }, () => served.client.readBlock(REF));
    await served.store.untilWaiting(2);
    await assert.rejects(served.client.flush(), /3 calls already wait/);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(served.store.waiting, 2);
    assert.equal(served.listener.stats().requestsInFlight, 2);
    served.store.open();
    for (const read of await Promise.all(calls)) assert.equal(read.data[0], 5);
  } finally {
    await served.close();
  }
});

Deno.test("tcp: node uuids are exchanged in the hello", async () => {
  const uuid = crypto.randomUUID();
  const served = await serve({ nodeUuid: uuid });
  try {
    assert.equal(served.client.remoteNodeUuid, null, "not connected yet");
    await served.client.flush();
    assert.equal(served.client.remoteNodeUuid, uuid);
    assert.ok(served.logs.some((line) => line.includes(`${uuid} connected`)));
  } finally {
    await served.close();
  }
});

Deno.test("tcp: the largest block size round-trips", async () => {
  const served = await serve({ blockSizeBytes: BLOCK_SIZE_BYTES_MAX }, 2);
  try {
    const data = prng.fill(new Uint8Array(BLOCK_SIZE_BYTES_MAX));
    await served.client.writeBlock(REF, data);
    assert.deepEqual((await served.client.readBlock(REF)).data, data);
    const part = await served.client.readBlock(REF, { offsetBytes: 5_000_000, lengthBytes: 100 });
    assert.deepEqual(part.data, data.subarray(5_000_000, 5_000_100));
  } finally {
    await served.close();
  }
});
