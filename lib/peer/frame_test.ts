import assert from "node:assert/strict";
import { AssertionError } from "../assert.ts";
import { BlockRef, BlockType } from "../core/block_ref.ts";
import { Prng } from "../prng.ts";
import {
  chooseVersion,
  decodeBitset,
  decodeCrcList,
  decodeFrameHeader,
  decodeHello,
  decodeMessage,
  decodeNodeUuid,
  decodeRefList,
  encodeBitset,
  encodeCrcList,
  encodeFrameHeader,
  encodeHello,
  encodeMessage,
  encodeNodeUuid,
  encodeRefList,
  type FrameHeader,
  frameHeader,
  type Hello,
  HelloStatus,
  NO_REF,
  parseRequest,
  PEER_ERROR_MESSAGE_BYTES_MAX,
  PEER_FLAG_EXPECT_DIGEST,
  PEER_FRAME_HEADER_BYTES,
  PEER_HAS_BLOCKS_BATCH_MAX,
  PEER_HELLO_BYTES,
  PEER_PROTOCOL_VERSION,
  PeerOp,
  replyPayloadBytesMax,
  requestPayloadBytesMax,
  sectorAligned,
} from "./frame.ts";

const BLOCK = 16384;
const REF = new BlockRef(3, BlockType.inode, 0x1234_5678_9a, 7).toBytes();

function hello(fields: Partial<Hello> = {}): Hello {
  return {
    versionMin: 1,
    versionMax: PEER_PROTOCOL_VERSION,
    status: HelloStatus.ok,
    blockSizeBytes: BLOCK,
    requestsInFlightMax: 64,
    nodeUuid: encodeNodeUuid("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
    ...fields,
  };
}

Deno.test("frame: a hello round-trips", () => {
  const bytes = encodeHello(hello());
  assert.equal(bytes.length, PEER_HELLO_BYTES);
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 8)), "TORUSTDP");
  assert.deepEqual(decodeHello(bytes), hello());
  assert.equal(new DataView(bytes.buffer).getUint32(16, true), BLOCK, "little-endian block size");
});

Deno.test("frame: a damaged hello is a SyntaxError", () => {
  const good = encodeHello(hello());
  for (let i = 0; i < good.length; i++) {
    const bad = good.slice();
    bad[i] = bad[i]! ^ 0x10;
    assert.throws(() => decodeHello(bad), SyntaxError, `byte ${i}`);
  }
  assert.throws(() => decodeHello(good.subarray(0, 43)), SyntaxError);
  assert.throws(
    () => decodeHello(encodeHello(hello({ versionMin: 3, versionMax: 2 }))),
    SyntaxError,
  );
});

Deno.test("frame: the version chosen is the newest both speak", () => {
  assert.equal(
    chooseVersion({ versionMin: 1, versionMax: 3 }, { versionMin: 2, versionMax: 5 }),
    3,
  );
  assert.equal(
    chooseVersion({ versionMin: 1, versionMax: 1 }, { versionMin: 1, versionMax: 9 }),
    1,
  );
  assert.equal(
    chooseVersion({ versionMin: 1, versionMax: 1 }, { versionMin: 2, versionMax: 2 }),
    null,
  );
});

Deno.test("frame: node uuids round-trip; anonymous is all zero", () => {
  const uuid = crypto.randomUUID();
  assert.equal(decodeNodeUuid(encodeNodeUuid(uuid)), uuid);
  assert.equal(decodeNodeUuid(encodeNodeUuid()), null);
  assert.throws(() => encodeNodeUuid("not-a-uuid"), TypeError);
});

Deno.test("frame: a header round-trips and any flipped bit is caught", () => {
  const header: FrameHeader = {
    requestId: 0xfedc_ba98,
    op: PeerOp.writeRange,
    flags: PEER_FLAG_EXPECT_DIGEST,
    status: 0,
    reserved: 0,
    ref: REF,
    offsetBytes: 4096,
    lengthBytes: 0,
    arg: 0xdead_beef,
    payloadBytes: 100,
    payloadCrc: 0x1234_5678,
  };
  const bytes = encodeFrameHeader(header);
  assert.equal(bytes.length, PEER_FRAME_HEADER_BYTES);
  assert.deepEqual(decodeFrameHeader(bytes), header);
  assert.deepEqual(bytes.subarray(8, 32), REF);
  for (let bit = 0; bit < PEER_FRAME_HEADER_BYTES * 8; bit++) {
    const bad = bytes.slice();
    bad[bit >> 3] = bad[bit >> 3]! ^ (1 << (bit & 7));
    assert.throws(() => decodeFrameHeader(bad), SyntaxError, `bit ${bit}`);
  }
  assert.throws(() => decodeFrameHeader(bytes.subarray(1)), SyntaxError);
  assert.throws(() => encodeFrameHeader({ ...header, payloadBytes: 2 ** 32 }), AssertionError);
  assert.throws(() => encodeFrameHeader({ ...header, offsetBytes: -1 }), AssertionError);
});

Deno.test("frame: parseRequest() accepts each op's valid form", () => {
  const cases: Partial<FrameHeader>[] = [
    { op: PeerOp.ping },
    { op: PeerOp.flush },
    { op: PeerOp.read, ref: REF, offsetBytes: 4096, lengthBytes: 8192 },
    { op: PeerOp.read, ref: REF, offsetBytes: 0, lengthBytes: BLOCK },
    { op: PeerOp.read, ref: REF, offsetBytes: BLOCK, lengthBytes: 0 },
    { op: PeerOp.write, ref: REF, payloadBytes: BLOCK },
    { op: PeerOp.write, ref: REF, payloadBytes: 0 },
    { op: PeerOp.writeRange, ref: REF, offsetBytes: BLOCK - 1, payloadBytes: 1 },
    {
      op: PeerOp.writeRange,
      ref: REF,
      flags: PEER_FLAG_EXPECT_DIGEST,
      arg: 0xffff_ffff,
      payloadBytes: 10,
    },
    { op: PeerOp.delete, ref: REF },
    { op: PeerOp.hasBlocks, lengthBytes: 2, payloadBytes: 48 },
    {
      op: PeerOp.hasBlocks,
      lengthBytes: PEER_HAS_BLOCKS_BATCH_MAX,
      payloadBytes: PEER_HAS_BLOCKS_BATCH_MAX * 24,
    },
  ];
  for (const fields of cases) {
    const parsed = parseRequest(frameHeader({ requestId: 1, op: 0, ...fields }), BLOCK);
    assert.equal(typeof parsed, "object", `${JSON.stringify(fields)}: ${parsed}`);
    if (typeof parsed === "object" && fields.ref !== undefined) {
      assert.ok(parsed.ref?.equals(BlockRef.fromBytes(REF)));
    }
  }
});

Deno.test("frame: parseRequest() describes every invalid request", () => {
  const badRef = REF.slice();
  badRef[7] = 9; // Block type 9.
  const cases: Partial<FrameHeader>[] = [
    { op: 7 },
    { op: 255 },
    { op: PeerOp.ping, status: 1 },
    { op: PeerOp.ping, reserved: 1 },
    { op: PeerOp.ping, flags: PEER_FLAG_EXPECT_DIGEST },
    { op: PeerOp.ping, ref: REF },
    { op: PeerOp.ping, arg: 1 },
    { op: PeerOp.flush, payloadBytes: 1 },
    { op: PeerOp.read, ref: badRef, lengthBytes: 4096 },
    { op: PeerOp.read, ref: REF, offsetBytes: 1, lengthBytes: 4096 },
    { op: PeerOp.read, ref: REF, offsetBytes: 0, lengthBytes: 100 },
    { op: PeerOp.read, ref: REF, offsetBytes: 8192, lengthBytes: 12288 },
    { op: PeerOp.read, ref: REF, offsetBytes: 0xffff_f000, lengthBytes: 0xffff_f000 },
    { op: PeerOp.read, ref: REF, lengthBytes: 4096, payloadBytes: 4 },
    { op: PeerOp.write, ref: REF, payloadBytes: BLOCK + 1 },
    { op: PeerOp.write, ref: REF, offsetBytes: 4096, payloadBytes: 1 },
    { op: PeerOp.write, ref: REF, flags: PEER_FLAG_EXPECT_DIGEST, payloadBytes: 1 },
    { op: PeerOp.writeRange, ref: REF, offsetBytes: BLOCK, payloadBytes: 1 },
    { op: PeerOp.writeRange, ref: REF, lengthBytes: 1, payloadBytes: 1 },
    { op: PeerOp.writeRange, ref: REF, arg: 5, payloadBytes: 1 },
    { op: PeerOp.writeRange, ref: REF, flags: 0x80, payloadBytes: 1 },
    { op: PeerOp.delete, ref: REF, lengthBytes: 1 },
    { op: PeerOp.hasBlocks, lengthBytes: 0 },
    { op: PeerOp.hasBlocks, lengthBytes: PEER_HAS_BLOCKS_BATCH_MAX + 1, payloadBytes: 0 },
    { op: PeerOp.hasBlocks, lengthBytes: 2, payloadBytes: 47 },
    { op: PeerOp.hasBlocks, ref: REF, lengthBytes: 1, payloadBytes: 24 },
  ];
  for (const fields of cases) {
    const parsed = parseRequest(frameHeader({ requestId: 1, op: 0, ...fields }), BLOCK);
    assert.equal(typeof parsed, "string", JSON.stringify(fields));
  }
});

Deno.test("frame: payload maxima cover the largest frames and no more", () => {
  assert.equal(requestPayloadBytesMax(512 * 1024), 512 * 1024);
  assert.equal(requestPayloadBytesMax(256), PEER_HAS_BLOCKS_BATCH_MAX * 24);
  assert.equal(replyPayloadBytesMax(512 * 1024), 512 * 1024 + 128 * 4);
  assert.equal(replyPayloadBytesMax(256), PEER_HAS_BLOCKS_BATCH_MAX / 8);
});

Deno.test("frame: sectorAligned() widens a range to whole sectors", () => {
  const cases = [
    [0, 1, 0, 4096],
    [4095, 2, 0, 8192],
    [4096, 4096, 4096, 4096],
    [5000, 0, 4096, 4096],
    [4096, 0, 4096, 0],
    [BLOCK - 1, 1, BLOCK - 4096, 4096],
  ];
  for (const [offsetBytes, lengthBytes, alignedOffset, alignedLength] of cases) {
    assert.deepEqual(
      sectorAligned(BLOCK, { offsetBytes: offsetBytes!, lengthBytes: lengthBytes! }),
      {
        offsetBytes: alignedOffset,
        lengthBytes: alignedLength,
      },
    );
  }
  assert.deepEqual(sectorAligned(256, { offsetBytes: 10, lengthBytes: 5 }), {
    offsetBytes: 0,
    lengthBytes: 256,
  });
});

Deno.test("frame: payload codecs round-trip and refuse bad lengths", () => {
  const prng = new Prng(11);
  const crcs = new Uint32Array(Array.from({ length: 9 }, () => prng.nextU32()));
  assert.deepEqual(decodeCrcList(encodeCrcList(crcs)), crcs);
  assert.throws(() => decodeCrcList(new Uint8Array(5)), SyntaxError);

  const refs = [new BlockRef(1, BlockType.data, 2, 3), BlockRef.fromBytes(REF)];
  assert.deepEqual(decodeRefList(encodeRefList(refs)), refs);
  assert.throws(() => decodeRefList(new Uint8Array(25)), SyntaxError);

  for (const count of [1, 7, 8, 9, 100]) {
    const bits = Array.from({ length: count }, () => prng.nextInt(2) === 1);
    assert.deepEqual(decodeBitset(encodeBitset(bits), count), bits);
  }
  assert.equal(encodeBitset([true, false, false, true])[0], 0b1001, "bit i is 1 << i");
  assert.throws(() => decodeBitset(new Uint8Array([0x10]), 4), SyntaxError, "bits past the end");
  assert.throws(() => decodeBitset(new Uint8Array(2), 8), SyntaxError);
  assert.equal(NO_REF.every((b) => b === 0), true);
});

Deno.test("frame: error messages are cut on a character boundary", () => {
  assert.equal(decodeMessage(encodeMessage("no such block")), "no such block");
  const long = "é".repeat(PEER_ERROR_MESSAGE_BYTES_MAX);
  const cut = encodeMessage(long);
  assert.ok(cut.length <= PEER_ERROR_MESSAGE_BYTES_MAX);
  assert.equal(decodeMessage(cut), "é".repeat(cut.length / 2));
  const odd = encodeMessage("a" + "é".repeat(PEER_ERROR_MESSAGE_BYTES_MAX));
  assert.equal(odd.length, PEER_ERROR_MESSAGE_BYTES_MAX - 1);
  assert.ok(!decodeMessage(odd).includes("\ufffd"));
});
