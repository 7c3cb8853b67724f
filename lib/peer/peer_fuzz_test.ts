/**
 * Fuzzes the peer server: many raw TCP connections send random bytes,
 * mutated and truncated hellos, frames with damaged headers, random but
 * well-checksummed headers (unknown ops, bad flags, ranges past the block,
 * huge payload lengths), damaged payloads, duplicate request ids, and leave
 * without reading. After every round:
 *
 * - each connection that sent a frame the protocol calls fatal was closed
 *   by the server itself;
 * - a well-behaved client (the real `TcpPeerClient`) on one long-lived
 *   connection is still served, and its acknowledged writes read back intact;
 * - the server holds no connection, request or buffer for the clients that
 *   left, and the process's memory stays bounded.
 *
 * Seeded by `TORUS_SEED` (printed); `TORUS_FUZZ_MS` sets the duration.
 */
import assert from "node:assert/strict";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { Prng, seedFromEnv } from "../prng.ts";
import { MemoryBlockStore } from "../storage/memory_block_store.ts";
import { encodeFrame, RawPeer } from "./_raw_peer.ts";
import {
  encodeFrameHeader,
  encodeHello,
  encodeNodeUuid,
  encodeRefList,
  type FrameHeader,
  frameHeader,
  payloadCrc,
  PEER_FLAG_EXPECT_DIGEST,
  PEER_FRAME_HEADER_BYTES,
  PEER_HAS_BLOCKS_BATCH_MAX,
  PEER_HELLO_BYTES,
  PEER_PROTOCOL_VERSION,
  PeerOp,
  requestPayloadBytesMax,
} from "./frame.ts";
import { PeerServer } from "./peer_server.ts";
import { TcpPeerClient } from "./peer_client.ts";

const MiB = 1024 * 1024;
/** How long the fuzz runs, in milliseconds; `TORUS_FUZZ_MS` overrides it. */
const FUZZ_DURATION_MS = Number(Deno.env.get("TORUS_FUZZ_MS") ?? 6_000);
/** Most rounds, whatever the time. */
const FUZZ_ROUNDS_MAX = 500;
/** Hostile connections per round, all at once. */
const FUZZ_CONNECTIONS_PER_ROUND = 12;
/** Milliseconds a hostile connection lives at most before the fuzzer hangs up. */
const FUZZ_SCENARIO_TIMEOUT_MS = 1_000;
/**
 * Milliseconds the server has to close a connection that sent a fatal frame:
 * well under its idle timeout, so only the protocol check can close it in time.
 */
const FUZZ_CLOSE_WAIT_MS = 1_500;
/** Idle and hello timeouts of the fuzzed server. */
const SERVER_IDLE_TIMEOUT_MS = 5_000;
/** Milliseconds the fuzzed server waits on a client that does not read its replies. */
const SERVER_WRITE_STALL_TIMEOUT_MS = 300;
/** Block size of the fuzzed server. */
const BLOCK = 16384;
/** Blocks of the fuzzed store. */
const STORE_BLOCKS = 1024;
/** Blocks the well-behaved client writes and checks. */
const GOOD_BLOCKS = 64;
/** Server-wide buffer budget of the fuzzed server: keeps the memory bound meaningful. */
const SERVER_BUFFERED_BYTES_MAX = 16 * MiB;
/** Rounds before memory is sampled as the baseline. */
const WARMUP_ROUNDS = 5;
/**
 * Most the JS heap may grow over its post-warm-up baseline. (The heap is the
 * measure of leaks; RSS keeps the allocator's high-water mark, ~400 MiB here.)
 */
const HEAP_GROWTH_MAX_BYTES = 128 * MiB;
/**
 * Most RSS the process may ever reach: a runaway check only, since under
 * `deno test --parallel` the process also runs other test files.
 */
const RSS_MAX_BYTES = 2048 * MiB;
/** Milliseconds the server has to release what hostile clients left behind. */
const SETTLE_TIMEOUT_MS = 5_000;

const GOOD_VOLUME = 1;
const HOSTILE_VOLUME = 0x55;

const pick = <T>(prng: Prng, items: readonly T[]): T => items[prng.nextInt(items.length)]!;
const randomBytes = (prng: Prng, length: number) => prng.fill(new Uint8Array(length));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Changes one to three distinct bytes of a copy of `message`. (Distinct: two
 * flips of one byte could cancel out and leave a valid message, which the
 * fuzzer would then expect the server to refuse; seed 3508116403 did that.)
 */
function flip(prng: Prng, message: Uint8Array): Uint8Array {
  const out = message.slice();
  const changed = new Set<number>();
  const n = Math.min(1 + prng.nextInt(3), out.length);
  while (changed.size < n) {
    const at = prng.nextInt(out.length);
    if (changed.has(at)) continue;
    changed.add(at);
    out[at] = out[at]! ^ (1 + prng.nextInt(255));
  }
  return out;
}

function hostileRef(prng: Prng): Uint8Array {
  if (prng.nextInt(10) === 0) return randomBytes(prng, 24);
  if (prng.nextInt(10) === 0) return new Uint8Array(24);
  return new BlockRef(HOSTILE_VOLUME, BlockType.data, prng.nextInt(4), prng.nextInt(16)).toBytes();
}

/** A request with a valid header checksum and fields anywhere from sane to absurd. */
function randomRequest(
  prng: Prng,
  requestId: number,
): { header: FrameHeader; payload: Uint8Array } {
  const op = pick(prng, [0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 255, prng.nextInt(256)]);
  let payload: Uint8Array = new Uint8Array(0);
  if (op === PeerOp.write || op === PeerOp.writeRange || prng.nextInt(8) === 0) {
    payload = randomBytes(prng, pick(prng, [0, 1, 100, 4096, BLOCK, prng.nextInt(BLOCK + 2)]));
  }
  let lengthBytes = pick(prng, [0, 4096, BLOCK, prng.nextInt(BLOCK + 1), 0xffff_ffff]);
  if (op === PeerOp.hasBlocks) {
    const count = pick(prng, [0, 1, 3, PEER_HAS_BLOCKS_BATCH_MAX, PEER_HAS_BLOCKS_BATCH_MAX + 1]);
    const refs = Array.from(
      { length: Math.min(count, 64) },
      () => new BlockRef(HOSTILE_VOLUME, BlockType.data, 0, prng.nextInt(64)),
    );
    payload = prng.nextInt(4) === 0 ? randomBytes(prng, count * 24) : encodeRefList(refs);
    lengthBytes = prng.nextInt(4) === 0 ? count : refs.length;
  }
  const header = frameHeader({
    requestId,
    op,
    flags: pick(prng, [0, 0, 0, PEER_FLAG_EXPECT_DIGEST, prng.nextInt(256)]),
    status: prng.nextInt(16) === 0 ? 1 : 0,
    reserved: prng.nextInt(16) === 0 ? 1 : 0,
    ref: op === PeerOp.hasBlocks || op === PeerOp.flush || op === PeerOp.ping
      ? (prng.nextInt(8) === 0 ? hostileRef(prng) : new Uint8Array(24))
      : hostileRef(prng),
    offsetBytes: pick(prng, [0, 0, 4096, prng.nextInt(BLOCK), BLOCK, BLOCK + 1, 0xffff_ffff]),
    lengthBytes,
    arg: prng.nextInt(4) === 0 ? prng.nextU32() : 0,
    payloadBytes: payload.length,
    payloadCrc: payloadCrc([payload]),
  });
  return { header, payload };
}

interface ScenarioResult {
  /** The last thing sent is fatal to the connection, and the stream was in sync before it. */
  expectClose: boolean;
}

/** One hostile connection's script. */
async function hostile(prng: Prng, peer: RawPeer): Promise<ScenarioResult> {
  const scenario = prng.nextInt(8);
  if (scenario === 0) {
    await peer.send(randomBytes(prng, prng.nextInt(2000)));
    return { expectClose: false };
  }
  const hello = encodeHello({
    versionMin: 1,
    versionMax: PEER_PROTOCOL_VERSION,
    status: 0,
    blockSizeBytes: BLOCK,
    requestsInFlightMax: pick(prng, [0, 1, 64, 0xffff_ffff]),
    nodeUuid: encodeNodeUuid(prng.nextInt(2) === 0 ? undefined : crypto.randomUUID()),
  });
  if (scenario === 1) {
    // A mangled hello: flipped, truncated, another block size or version.
    const variant = prng.nextInt(4);
    if (variant === 0) {
      await peer.send(flip(prng, hello));
      return { expectClose: true };
    }
    if (variant === 1) {
      await peer.send(hello.subarray(0, prng.nextInt(PEER_HELLO_BYTES)));
      return { expectClose: false };
    }
    const view = new DataView(hello.buffer);
    if (variant === 2) {
      view.setUint32(16, pick(prng, [0, BLOCK * 2, 0xffff_ffff]), true);
    } else {
      view.setUint16(8, 0xfff0, true);
      view.setUint16(10, 0xffff, true);
    }
    await peer.send(encodeHello({
      versionMin: view.getUint16(8, true),
      versionMax: view.getUint16(10, true),
      status: 0,
      blockSizeBytes: view.getUint32(16, true),
      requestsInFlightMax: 1,
      nodeUuid: new Uint8Array(16),
    }));
    return { expectClose: true };
  }
  if (scenario === 2) {
    // Connect, say hello, leave.
    await peer.send(hello);
    return { expectClose: false };
  }
  await peer.send(hello);
  let inSync = true;
  const requestIds: number[] = [];
  for (let i = 0, n = 1 + prng.nextInt(30); i < n; i++) {
    const requestId = prng.nextInt(4) === 0 && requestIds.length > 0
      ? pick(prng, requestIds) // Possibly a duplicate in flight.
      : prng.nextU32();
    requestIds.push(requestId);
    const { header, payload } = randomRequest(prng, requestId);
    const kind = prng.nextInt(10);
    if (kind === 0) {
      // A damaged header: fatal.
      await peer.send(
        flip(prng, encodeFrame(header, payload).subarray(0, PEER_FRAME_HEADER_BYTES)),
      );
      return { expectClose: inSync };
    }
    if (kind === 1) {
      // A payload length past the maximum: fatal.
      const huge = pick(prng, [requestPayloadBytesMax(BLOCK) + 1, 0xffff_ffff, 1 << 30]);
      await peer.send(encodeFrameHeader({ ...header, payloadBytes: huge }));
      await peer.send(randomBytes(prng, prng.nextInt(100)));
      return { expectClose: inSync };
    }
    if (kind === 2) {
      // A damaged payload: the frame holds, the request is refused.
      const bytes = encodeFrame(header, payload);
      if (payload.length > 0) {
        const at = PEER_FRAME_HEADER_BYTES + prng.nextInt(payload.length);
        bytes[at] = bytes[at]! ^ 0x01;
      }
      await peer.send(bytes);
      continue;
    }
    if (kind === 3) {
      // Truncated: part of the frame, then the connection ends.
      const bytes = encodeFrame(header, payload);
      await peer.send(bytes.subarray(0, prng.nextInt(bytes.length)));
      return { expectClose: false };
    }
    if (kind === 4) {
      await peer.send(randomBytes(prng, prng.nextInt(200)));
      inSync = false;
      continue;
    }
    await peer.send(encodeFrame(header, payload));
  }
  return { expectClose: false };
}

/** Runs one hostile connection; returns an error message when the server misbehaved. */
async function hostileConnection(prng: Prng, port: number): Promise<string | null> {
  const peer = await RawPeer.connect(port);
  // Half the connections read what the server sends; the others never do.
  const reads = prng.nextInt(2) === 0;
  const drain = reads ? peer.closedByPeer() : Promise.resolve(false);
  const timer = setTimeout(() => peer.close(), FUZZ_SCENARIO_TIMEOUT_MS);
  let result: ScenarioResult = { expectClose: false };
  try {
    result = await hostile(prng, peer);
  } catch {
    // The server hung up, or the timer did: both are expected.
  } finally {
    clearTimeout(timer);
  }
  try {
    if (result.expectClose) {
      const closed = await Promise.race([
        reads ? drain : peer.closedByPeer(),
        sleep(FUZZ_CLOSE_WAIT_MS).then(() => false),
      ]);
      if (!closed) return "the server kept a connection that sent a fatal frame";
    } else if (prng.nextInt(2) === 0) {
      await sleep(prng.nextInt(50));
    }
    return null;
  } finally {
    peer.close();
    await drain;
  }
}

/** The well-behaved client's round: writes (whole and in place), then reads checked against the shadow. */
async function goodRound(
  prng: Prng,
  client: TcpPeerClient,
  shadow: Map<number, Uint8Array>,
): Promise<void> {
  const ref = (index: number) => new BlockRef(GOOD_VOLUME, BlockType.data, 1, index);
  const writes = [];
  const touched = new Set<number>();
  for (let i = 0; i < 6; i++) {
    const index = prng.nextInt(GOOD_BLOCKS);
    if (touched.has(index)) continue;
    touched.add(index);
    const current = shadow.get(index);
    if (current !== undefined && prng.nextInt(2) === 0) {
      const length = 1 + prng.nextInt(6000);
      const offset = prng.nextInt(BLOCK - length);
      const patch = randomBytes(prng, length);
      current.set(patch, offset);
      writes.push(client.writeBlockRange(ref(index), offset, patch));
    } else {
      const data = new Uint8Array(BLOCK);
      data.set(randomBytes(prng, 1 + prng.nextInt(BLOCK)));
      shadow.set(index, data);
      writes.push(client.writeBlock(ref(index), data));
    }
  }
  await Promise.all(writes);
  const reads = [...shadow.keys()].slice(0, 8).map(async (index) => {
    const length = 1 + prng.nextInt(BLOCK);
    const offset = prng.nextInt(BLOCK - length + 1);
    const read = await client.readBlock(ref(index), { offsetBytes: offset, lengthBytes: length });
    assert.deepEqual(
      read.data,
      shadow.get(index)!.subarray(offset, offset + length),
      `block ${index}`,
    );
  });
  await Promise.all(reads);
  const present = await client.hasBlocks([...shadow.keys()].map(ref));
  assert.ok(present.every((stored) => stored), "an acknowledged block went missing");
}

/** Waits until only the good client's connection is left and nothing is held. */
async function settle(server: PeerServer): Promise<void> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  for (;;) {
    const stats = server.stats();
    if (stats.connections <= 1 && stats.requestsInFlight === 0 && stats.bufferedBytes === 0) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`the server still holds resources: ${JSON.stringify(stats)}`);
    }
    await sleep(10);
  }
}

Deno.test("peer fuzz: hostile traffic never crashes the server, corrupts data or leaks", async () => {
  const seed = seedFromEnv();
  console.log(`peer fuzz: TORUS_SEED=${seed}`);
  const prng = new Prng(seed);
  const store = new MemoryBlockStore({ blockSizeBytes: BLOCK, numBlocks: STORE_BLOCKS });
  const server = PeerServer.listen({
    store,
    port: 0,
    limits: {
      serverBufferedBytesMax: SERVER_BUFFERED_BYTES_MAX,
      handshakeTimeoutMs: SERVER_IDLE_TIMEOUT_MS,
      idleTimeoutMs: SERVER_IDLE_TIMEOUT_MS,
      writeStallTimeoutMs: SERVER_WRITE_STALL_TIMEOUT_MS,
    },
  });
  const client = new TcpPeerClient({
    address: server.address,
    blockSizeBytes: BLOCK,
    limits: { keepaliveIntervalMs: 100 },
  });
  const shadow = new Map<number, Uint8Array>();
  let rounds = 0;
  let baselineHeap = 0;
  let peakRss = 0;
  try {
    const started = Date.now();
    while (Date.now() - started < FUZZ_DURATION_MS && rounds < FUZZ_ROUNDS_MAX) {
      rounds++;
      const [failures] = await Promise.all([
        Promise.all(
          Array.from(
            { length: FUZZ_CONNECTIONS_PER_ROUND },
            () => hostileConnection(new Prng(prng.nextU32()), server.port),
          ),
        ),
        goodRound(prng, client, shadow),
      ]);
      const failure = failures.find((message) => message !== null);
      assert.equal(failure, undefined, failure ?? "");
      await settle(server);
      // Keep the store from filling up with hostile blocks.
      for (const ref of store.blockRefs()) {
        if (ref.volume !== GOOD_VOLUME) await store.deleteBlock(ref);
      }
      const { rss, heapUsed } = Deno.memoryUsage();
      peakRss = Math.max(peakRss, rss);
      assert.ok(rss < RSS_MAX_BYTES, `RSS ${rss} bytes`);
      if (rounds === WARMUP_ROUNDS) baselineHeap = heapUsed;
    }
    assert.ok(rounds > WARMUP_ROUNDS, `only ${rounds} rounds ran`);
    // Every acknowledged write is intact, read whole through a fresh client.
    const fresh = new TcpPeerClient({ address: server.address, blockSizeBytes: BLOCK });
    try {
      for (const [index, data] of shadow) {
        const ref = new BlockRef(GOOD_VOLUME, BlockType.data, 1, index);
        assert.deepEqual((await fresh.readBlock(ref)).data, data, `block ${index}`);
      }
    } finally {
      await fresh.close();
    }
    const finalHeap = Deno.memoryUsage().heapUsed;
    assert.ok(
      finalHeap - baselineHeap < HEAP_GROWTH_MAX_BYTES,
      `the heap grew from ${baselineHeap} to ${finalHeap} bytes over ${rounds} rounds`,
    );
    console.log(
      `peer fuzz: seed ${seed}, ${rounds} rounds of ${FUZZ_CONNECTIONS_PER_ROUND} connections, ` +
        `${shadow.size} blocks checked, heap ${(baselineHeap / MiB).toFixed(0)} → ` +
        `${(finalHeap / MiB).toFixed(0)} MiB, peak RSS ${(peakRss / MiB).toFixed(0)} MiB`,
    );
  } catch (error) {
    console.error(`peer fuzz failed in round ${rounds}; replay with TORUS_SEED=${seed}`);
    throw error;
  } finally {
    await client.close();
    await server.close();
    await store.close();
  }
});
