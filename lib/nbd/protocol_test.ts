import assert from "node:assert/strict";
import {
  checkRequest,
  commandName,
  decodeClientFlags,
  decodeInfoRequest,
  decodeOptionHeader,
  decodeOptionReplyHeader,
  decodeReplyHeader,
  decodeRequest,
  decodeString,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoName,
  encodeInfoRequest,
  encodeOffsetDataHeader,
  encodeOption,
  encodeOptionError,
  encodeOptionReply,
  encodeRequest,
  encodeServerReplyData,
  encodeSimpleReply,
  encodeStringBounded,
  encodeStructuredDone,
  encodeStructuredError,
  errnoName,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_ERROR_MESSAGE_BYTES_MAX,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAX_REQUEST_BYTES,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_REP_ACK,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_STRING_BYTES_MAX,
  optionName,
  type RequestContext,
  transmissionFlags,
} from "./protocol.ts";

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

Deno.test("greeting is NBDMAGIC, IHAVEOPT and the handshake flags", () => {
  const bytes = encodeGreeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 16)), "NBDMAGICIHAVEOPT");
  assert.equal(hex(bytes.subarray(16)), "0003");
});

Deno.test("client flags: known bits decode, unknown bits are a protocol error", () => {
  assert.deepEqual(decodeClientFlags(new Uint8Array([0, 0, 0, 3])), {
    fixedNewstyle: true,
    noZeroes: true,
  });
  assert.deepEqual(decodeClientFlags(new Uint8Array([0, 0, 0, 0])), {
    fixedNewstyle: false,
    noZeroes: false,
  });
  assert.throws(() => decodeClientFlags(new Uint8Array([0, 0, 0, 4])), SyntaxError);
  assert.throws(() => decodeClientFlags(new Uint8Array([0x80, 0, 0, 1])), SyntaxError);
  assert.throws(() => decodeClientFlags(new Uint8Array(3)), SyntaxError);
});

Deno.test("options round-trip and a bad magic throws", () => {
  const bytes = encodeOption(NBD_OPT_GO, new Uint8Array([1, 2, 3]));
  assert.deepEqual(decodeOptionHeader(bytes.subarray(0, 16)), {
    option: NBD_OPT_GO,
    lengthBytes: 3,
  });
  const bad = bytes.slice(0, 16);
  bad[0] = bad[0]! ^ 1;
  assert.throws(() => decodeOptionHeader(bad), SyntaxError);
});

Deno.test("option replies carry magic, option, type and data", () => {
  const bytes = encodeOptionReply(NBD_OPT_LIST, NBD_REP_ACK);
  assert.equal(hex(bytes), "0003e889045565a9" + "00000003" + "00000001" + "00000000");
  const error = encodeOptionError(NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, "no such export");
  const header = decodeOptionReplyHeader(error.subarray(0, 20));
  assert.equal(header.replyType, NBD_REP_ERR_UNKNOWN);
  assert.equal(new TextDecoder().decode(error.subarray(20)), "no such export");
  assert.equal(header.lengthBytes, 14);
  assert.equal(NBD_REP_ERR_UNSUP, 0x8000_0001);
});

Deno.test("NBD_REP_SERVER data is the name's length then the name", () => {
  assert.equal(hex(encodeServerReplyData("ab")), "000000026162");
});

Deno.test("export name reply has 124 zeroes unless NO_ZEROES", () => {
  const padded = encodeExportNameReply(2 ** 40 + 5, 0x1ed, false);
  assert.equal(padded.length, 134);
  assert.equal(hex(padded.subarray(0, 10)), "0000010000000005" + "01ed");
  assert.ok(padded.subarray(10).every((b) => b === 0));
  assert.equal(encodeExportNameReply(1, 1, true).length, 10);
});

Deno.test("info replies have the spec's layouts", () => {
  assert.equal(hex(encodeInfoExport(4096, 0x0d)), "0000" + "0000000000001000" + "000d");
  assert.equal(
    hex(encodeInfoBlockSize(1, 4096, NBD_MAX_REQUEST_BYTES)),
    "0003" + "00000001" + "00001000" + "02000000",
  );
  assert.equal(hex(encodeInfoName("x")), "0001" + "78");
});

Deno.test("info requests round-trip and malformed ones throw", () => {
  const request = { name: "vol/a", infos: [NBD_INFO_EXPORT, NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE] };
  assert.deepEqual(decodeInfoRequest(encodeInfoRequest(request)), request);
  assert.deepEqual(decodeInfoRequest(encodeInfoRequest({ name: "", infos: [] })), {
    name: "",
    infos: [],
  });
  const good = encodeInfoRequest(request);
  assert.throws(() => decodeInfoRequest(good.subarray(0, 5)), SyntaxError);
  assert.throws(() => decodeInfoRequest(good.subarray(0, good.length - 1)), SyntaxError);
  const longName = good.slice();
  new DataView(longName.buffer).setUint32(0, 0xffff_ffff);
  assert.throws(() => decodeInfoRequest(longName), SyntaxError);
  const extra = new Uint8Array(good.length + 2);
  extra.set(good);
  assert.throws(() => decodeInfoRequest(extra), SyntaxError);
});

Deno.test("strings: NUL, bad UTF-8 and overlong strings are rejected", () => {
  assert.equal(decodeString(new TextEncoder().encode("héllo")), "héllo");
  assert.throws(() => decodeString(new Uint8Array([0x61, 0])), SyntaxError);
  assert.throws(() => decodeString(new Uint8Array([0xff])), SyntaxError);
  assert.throws(
    () => decodeString(new Uint8Array(NBD_STRING_BYTES_MAX + 1).fill(0x61)),
    SyntaxError,
  );
  // Bounded encoding never splits a character.
  const cut = encodeStringBounded("aé", 2);
  assert.equal(new TextDecoder().decode(cut), "a");
});

Deno.test("requests round-trip, including 64-bit offsets and handles", () => {
  const request = {
    flags: NBD_CMD_FLAG_FUA,
    type: NBD_CMD_WRITE,
    handle: 0xdead_beef_cafe_f00dn,
    offsetBytes: 2 ** 50 + 12345,
    lengthBytes: 4096,
  };
  const bytes = encodeRequest(request);
  assert.equal(bytes.length, 28);
  assert.equal(hex(bytes.subarray(0, 4)), "25609513");
  assert.deepEqual(decodeRequest(bytes), request);
  const bad = bytes.slice();
  bad[3] = bad[3]! ^ 0xff;
  assert.throws(() => decodeRequest(bad), SyntaxError);
  assert.throws(() => decodeRequest(bytes.subarray(0, 27)), SyntaxError);
});

Deno.test("offsets past 2^53 decode to numbers past 2^53", () => {
  const bytes = encodeRequest({
    flags: 0,
    type: NBD_CMD_READ,
    handle: 1n,
    offsetBytes: 0,
    lengthBytes: 1,
  });
  bytes.fill(0xff, 16, 24);
  const { offsetBytes } = decodeRequest(bytes);
  assert.ok(offsetBytes >= 2 ** 53);
});

Deno.test("simple and structured replies decode back", () => {
  const simple = encodeSimpleReply(NBD_EINVAL, 7n);
  assert.equal(hex(simple.subarray(0, 8)), "67446698" + "00000016");
  assert.deepEqual(decodeReplyHeader(simple), { kind: "simple", errno: NBD_EINVAL, handle: 7n });

  const data = encodeOffsetDataHeader(9n, 4096, 512);
  assert.equal(data.length, 28);
  assert.deepEqual(decodeReplyHeader(data), {
    kind: "structured",
    flags: NBD_REPLY_FLAG_DONE,
    type: NBD_REPLY_TYPE_OFFSET_DATA,
    handle: 9n,
    lengthBytes: 8 + 512,
  });
  assert.equal(hex(data.subarray(20)), "0000000000001000");

  const done = encodeStructuredDone(3n);
  assert.equal(decodeReplyHeader(done).kind, "structured");
  assert.equal((decodeReplyHeader(done) as { type: number }).type, NBD_REPLY_TYPE_NONE);

  const error = encodeStructuredError(5n, NBD_EPERM, "read-only");
  const header = decodeReplyHeader(error);
  assert.equal(header.kind, "structured");
  assert.equal((header as { type: number }).type, NBD_REPLY_TYPE_ERROR);
  assert.equal(hex(error.subarray(20, 26)), "00000001" + "0009");
  assert.equal(new TextDecoder().decode(error.subarray(26)), "read-only");
  const long = encodeStructuredError(5n, NBD_EPERM, "x".repeat(10_000));
  assert.equal(long.length, 20 + 6 + NBD_ERROR_MESSAGE_BYTES_MAX);
  assert.throws(() => decodeReplyHeader(new Uint8Array(20)), SyntaxError);
});

Deno.test("transmission flags are truthful", () => {
  const writable = transmissionFlags({ readOnly: false, multiConn: false }, false);
  assert.equal(
    writable,
    NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
      NBD_FLAG_SEND_WRITE_ZEROES,
  );
  const readOnly = transmissionFlags({ readOnly: true, multiConn: true }, true);
  assert.equal(
    readOnly,
    NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_READ_ONLY | NBD_FLAG_CAN_MULTI_CONN |
      NBD_FLAG_SEND_DF,
  );
});

Deno.test("names of options, commands and errnos", () => {
  assert.equal(optionName(NBD_OPT_GO), "NBD_OPT_GO");
  assert.equal(optionName(99), "option 99");
  assert.equal(commandName(NBD_CMD_TRIM), "NBD_CMD_TRIM");
  assert.equal(errnoName(NBD_ENOSPC), "ENOSPC");
});

Deno.test("checkRequest: errnos per the spec", () => {
  const size = 1 << 20;
  const rw: RequestContext = { sizeBytes: size, readOnly: false, structuredReplies: true };
  const ro: RequestContext = { sizeBytes: size, readOnly: true, structuredReplies: false };
  const req = (type: number, offsetBytes: number, lengthBytes: number, flags = 0) => ({
    type,
    offsetBytes,
    lengthBytes,
    flags,
    handle: 1n,
  });
  const errno = (r: ReturnType<typeof req>, c: RequestContext) => checkRequest(r, c)?.errno ?? 0;

  assert.equal(errno(req(NBD_CMD_READ, 0, size), rw), 0);
  assert.equal(errno(req(NBD_CMD_WRITE, size - 1, 1, NBD_CMD_FLAG_FUA), rw), 0);
  assert.equal(errno(req(NBD_CMD_WRITE_ZEROES, 0, size, NBD_CMD_FLAG_NO_HOLE), rw), 0);
  assert.equal(errno(req(NBD_CMD_TRIM, 0, size), rw), 0);
  assert.equal(errno(req(NBD_CMD_FLUSH, 0, 0), rw), 0);
  assert.equal(errno(req(NBD_CMD_DISC, 0, 0), rw), 0);
  assert.equal(errno(req(NBD_CMD_READ, 0, 512, NBD_CMD_FLAG_DF), rw), 0);

  // Out of range: EINVAL for read and trim, ENOSPC for writes.
  assert.equal(errno(req(NBD_CMD_READ, size, 1), rw), NBD_EINVAL);
  assert.equal(errno(req(NBD_CMD_READ, 2 ** 60, 1), rw), NBD_EINVAL);
  assert.equal(errno(req(NBD_CMD_TRIM, size - 1, 2), rw), NBD_EINVAL);
  assert.equal(errno(req(NBD_CMD_WRITE, size - 1, 2), rw), NBD_ENOSPC);
  assert.equal(errno(req(NBD_CMD_WRITE_ZEROES, size + 1, 1), rw), NBD_ENOSPC);

  // Zero and oversized lengths.
  assert.equal(errno(req(NBD_CMD_READ, 0, 0), rw), NBD_EINVAL);
  assert.equal(errno(req(NBD_CMD_WRITE, 0, 0), rw), NBD_EINVAL);
  const huge = { sizeBytes: 2 ** 40, readOnly: false, structuredReplies: true };
  assert.equal(errno(req(NBD_CMD_READ, 0, NBD_MAX_REQUEST_BYTES + 1), huge), NBD_EINVAL);
  assert.equal(errno(req(NBD_CMD_WRITE, 0, NBD_MAX_REQUEST_BYTES + 1), huge), NBD_EINVAL);
  assert.equal(errno(req(NBD_CMD_TRIM, 0, 0xffff_ffff), huge), 0);

  // Read-only export.
  assert.equal(errno(req(NBD_CMD_WRITE, 0, 1), ro), NBD_EPERM);
  assert.equal(errno(req(NBD_CMD_TRIM, 0, 1), ro), NBD_EPERM);
  assert.equal(errno(req(NBD_CMD_WRITE_ZEROES, 0, 1), ro), NBD_EPERM);
  assert.equal(errno(req(NBD_CMD_WRITE, size, 1, NBD_CMD_FLAG_FUA), ro), NBD_EPERM);
  assert.equal(errno(req(NBD_CMD_READ, 0, 1), ro), 0);
  assert.equal(errno(req(NBD_CMD_READ, 0, 1, NBD_CMD_FLAG_FUA), ro), NBD_EINVAL);

  // Unknown commands and flags.
  assert.equal(errno(req(5, 0, 1), rw), NBD_EINVAL);
  assert.equal(errno(req(0xffff, 0, 1), rw), NBD_EINVAL);
  assert.equal(errno(req(NBD_CMD_WRITE, 0, 1, NBD_CMD_FLAG_NO_HOLE), rw), NBD_EINVAL);
  assert.equal(errno(req(NBD_CMD_WRITE_ZEROES, 0, 1, NBD_CMD_FLAG_FAST_ZERO), rw), NBD_EINVAL);
  assert.equal(errno(req(NBD_CMD_READ, 0, 1, NBD_CMD_FLAG_DF), ro), NBD_EINVAL);
  assert.equal(errno(req(NBD_CMD_READ, 0, 1, 0x8000), rw), NBD_EINVAL);
  assert.equal(errno(req(NBD_CMD_FLUSH, 0, 1), rw), NBD_EINVAL);
  assert.ok(checkRequest(req(NBD_CMD_WRITE, size, 1), rw)?.message.includes("past the export"));
});
