import assert from "node:assert/strict";
import { pipe } from "./_pipe.ts";
import { RawClient } from "./_raw_client.ts";
import { ByteReader } from "./byte_reader.ts";
import { HANDSHAKE_OPTIONS_MAX, type HandshakeResult, negotiate } from "./handshake.ts";
import { silentLogger } from "./log.ts";
import { MemoryExportProvider } from "./memory_export.ts";
import {
  encodeInfoRequest,
  encodeMetaContextRequest,
  encodeOption,
  NBD_BASE_ALLOCATION_ID,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FUA,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_OPTION_LENGTH_BYTES_MAX,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
} from "./protocol.ts";
import { SerialWriter } from "./serial_writer.ts";

function setup(options: { shuttingDown?: boolean } = {}) {
  const provider = new MemoryExportProvider([
    { name: "disk", sizeBytes: 1 << 20 },
    { name: "ro", sizeBytes: 4096, readOnly: true, multiConn: false },
    { name: "solo", sizeBytes: 4096, exclusive: true },
  ]);
  const [serverEnd, clientEnd] = pipe();
  const result: Promise<HandshakeResult | null> = negotiate(
    new ByteReader(serverEnd),
    new SerialWriter(serverEnd),
    { provider, isShuttingDown: () => options.shuttingDown ?? false, log: silentLogger },
  );
  const client = new RawClient(clientEnd);
  const done = async () => {
    const outcome = await result.catch((e) => e);
    if (outcome !== null && typeof outcome === "object" && "export" in outcome) {
      await outcome.export.close();
    }
    serverEnd.close();
    clientEnd.close();
  };
  return { provider, result, client, done };
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test("handshake: greeting offers fixed newstyle and no zeroes", async () => {
  const { client, result, done } = setup();
  assert.equal(await client.greet(), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  client.close();
  assert.equal(await result, null);
  await done();
});

Deno.test("handshake: NBD_OPT_ABORT is acknowledged, then the handshake ends", async () => {
  const { client, result, done } = setup();
  await client.greet();
  await client.sendOption(NBD_OPT_ABORT);
  const reply = await client.readOptionReply();
  assert.equal(reply.option, NBD_OPT_ABORT);
  assert.equal(reply.replyType, NBD_REP_ACK);
  assert.equal(await result, null);
  await done();
});

Deno.test("handshake: NBD_OPT_ABORT from a client that already left", async () => {
  const { client, result, done } = setup();
  await client.greet();
  await client.sendOption(NBD_OPT_ABORT);
  client.close();
  assert.equal(await result, null);
  await done();
});

Deno.test("handshake: NBD_OPT_LIST lists every export; data is invalid", async () => {
  const { client, done } = setup();
  await client.greet();
  await client.sendOption(NBD_OPT_LIST);
  const names: string[] = [];
  for (;;) {
    const reply = await client.readOptionReply();
    if (reply.replyType === NBD_REP_ACK) break;
    assert.equal(reply.replyType, NBD_REP_SERVER);
    const length = new DataView(reply.data.buffer).getUint32(0);
    names.push(text(reply.data.subarray(4, 4 + length)));
  }
  assert.deepEqual(names, ["disk", "ro", "solo"]);
  await client.sendOption(NBD_OPT_LIST, new Uint8Array([1]));
  assert.equal((await client.readOptionReply()).replyType, NBD_REP_ERR_INVALID);
  client.close();
  await done();
});

Deno.test("handshake: unknown and unsupported options get NBD_REP_ERR_UNSUP", async () => {
  const { client, result, done } = setup();
  await client.greet();
  // 11 is NBD_OPT_EXTENDED_HEADERS, not served.
  for (const option of [42, NBD_OPT_STARTTLS, 11, 0xffff_ffff]) {
    await client.sendOption(option, new Uint8Array(3));
    const reply = await client.readOptionReply();
    assert.equal(reply.option, option);
    assert.equal(reply.replyType, NBD_REP_ERR_UNSUP);
  }
  const go = await client.go("disk");
  assert.ok("sizeBytes" in go);
  assert.equal((await result)?.export.name, "disk");
  await done();
});

Deno.test("handshake: meta contexts: base:allocation is listed and selected for one export", async () => {
  const { client, result, done } = setup();
  await client.greet();
  const metaReplies = async () => {
    const names: string[] = [];
    for (;;) {
      const reply = await client.readOptionReply();
      if (reply.replyType === NBD_REP_ACK) return names;
      assert.equal(reply.replyType, NBD_REP_META_CONTEXT);
      assert.equal(new DataView(reply.data.buffer).getUint32(0), NBD_BASE_ALLOCATION_ID);
      names.push(text(reply.data.subarray(4)));
    }
  };
  const request = (queries: string[], exportName = "disk") =>
    encodeMetaContextRequest({ exportName, queries });
  // Selecting needs structured replies first; listing does not.
  await client.sendOption(NBD_OPT_SET_META_CONTEXT, request(["base:allocation"]));
  assert.equal((await client.readOptionReply()).replyType, NBD_REP_ERR_INVALID);
  await client.sendOption(NBD_OPT_LIST_META_CONTEXT, request([]));
  assert.deepEqual(await metaReplies(), ["base:allocation"], "no query lists everything");
  await client.sendOption(NBD_OPT_LIST_META_CONTEXT, request(["qemu:dirty-bitmap:x"]));
  assert.deepEqual(await metaReplies(), []);
  await client.sendOption(NBD_OPT_LIST_META_CONTEXT, new Uint8Array([0, 0, 0, 9, 1]));
  assert.equal((await client.readOptionReply()).replyType, NBD_REP_ERR_INVALID, "truncated");
  assert.equal(await client.negotiateStructuredReplies(), true);
  await client.sendOption(NBD_OPT_SET_META_CONTEXT, request(["base:"]));
  assert.deepEqual(await metaReplies(), ["base:allocation"]);
  const go = await client.go("disk");
  assert.ok("sizeBytes" in go);
  assert.equal((await result)?.blockStatus, true);
  await done();
});

Deno.test("handshake: a context selected for another export, or deselected, is not in force", async () => {
  for (const [selectFor, queries] of [["ro", ["base:allocation"]], ["disk", []]] as const) {
    const { client, result, done } = setup();
    await client.greet();
    assert.equal(await client.negotiateStructuredReplies(), true);
    await client.sendOption(
      NBD_OPT_SET_META_CONTEXT,
      encodeMetaContextRequest({ exportName: selectFor, queries: [...queries] }),
    );
    for (;;) if ((await client.readOptionReply()).replyType === NBD_REP_ACK) break;
    await client.go("disk");
    assert.equal((await result)?.blockStatus, false, `selected for ${selectFor} with ${queries}`);
    await done();
  }
});

Deno.test("handshake: structured replies are agreed and change the flags", async () => {
  const { client, result, done } = setup();
  await client.greet();
  await client.sendOption(NBD_OPT_STRUCTURED_REPLY, new Uint8Array(1));
  assert.equal((await client.readOptionReply()).replyType, NBD_REP_ERR_INVALID);
  assert.equal(await client.negotiateStructuredReplies(), true);
  const go = await client.go("disk");
  assert.ok("sizeBytes" in go);
  assert.equal(go.sizeBytes, 1 << 20);
  assert.ok(go.flags & NBD_FLAG_SEND_DF);
  assert.ok(go.flags & NBD_FLAG_CAN_MULTI_CONN);
  const agreed = await result;
  assert.equal(agreed?.structuredReplies, true);
  assert.equal(agreed?.transmissionFlags, go.flags);
  await done();
});

Deno.test("handshake: NBD_OPT_INFO describes an export and releases it", async () => {
  const { client, provider, done } = setup();
  await client.greet();
  await client.sendOption(
    NBD_OPT_INFO,
    encodeInfoRequest({ name: "", infos: [NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE] }),
  );
  const infos = new Map<number, Uint8Array>();
  for (;;) {
    const reply = await client.readOptionReply();
    if (reply.replyType === NBD_REP_ACK) break;
    assert.equal(reply.replyType, NBD_REP_INFO);
    infos.set(new DataView(reply.data.buffer).getUint16(0), reply.data);
  }
  const exportInfo = new DataView(infos.get(NBD_INFO_EXPORT)!.buffer);
  assert.equal(Number(exportInfo.getBigUint64(2)), 1 << 20);
  assert.equal(text(infos.get(NBD_INFO_NAME)!.subarray(2)), "disk");
  const blockSize = new DataView(infos.get(NBD_INFO_BLOCK_SIZE)!.buffer);
  assert.deepEqual(
    [blockSize.getUint32(2), blockSize.getUint32(6), blockSize.getUint32(10)],
    [1, 4096, 32 * 1024 * 1024],
  );
  assert.equal(provider.openCount, 0);
  // The read-only export's flags say so.
  const ro = await client.go("ro");
  assert.ok("flags" in ro);
  assert.ok(ro.flags & NBD_FLAG_READ_ONLY);
  assert.equal(ro.flags & NBD_FLAG_SEND_FUA, 0);
  assert.equal(ro.flags & NBD_FLAG_CAN_MULTI_CONN, 0);
  await done();
});

Deno.test("handshake: NBD_OPT_GO errors: unknown export, in use, malformed data", async () => {
  const { client, provider, result, done } = setup();
  const solo = await provider.open("solo");
  await client.greet();
  const unknown = await client.go("nope");
  assert.ok(!("sizeBytes" in unknown));
  assert.equal(unknown.replyType, NBD_REP_ERR_UNKNOWN);
  assert.match(text(unknown.data), /not found/);
  const inUse = await client.go("solo");
  assert.ok(!("sizeBytes" in inUse));
  assert.equal(inUse.replyType, NBD_REP_ERR_POLICY);
  assert.equal(text(inUse.data), "volume solo is in use");
  await client.sendOption(NBD_OPT_GO, new Uint8Array([0, 0, 0, 9, 1]));
  assert.equal((await client.readOptionReply()).replyType, NBD_REP_ERR_INVALID);
  const bad = encodeInfoRequest({ name: "disk", infos: [] });
  bad[4] = 0xff; // Not UTF-8.
  await client.sendOption(NBD_OPT_GO, bad);
  assert.equal((await client.readOptionReply()).replyType, NBD_REP_ERR_INVALID);
  await solo.close();
  const go = await client.go("solo");
  assert.ok("sizeBytes" in go);
  assert.equal((await result)?.export.name, "solo");
  await done();
});

Deno.test("handshake: NBD_OPT_EXPORT_NAME honours NO_ZEROES", async () => {
  for (const noZeroes of [true, false]) {
    const { client, result, done } = setup();
    await client.greet(NBD_FLAG_C_FIXED_NEWSTYLE | (noZeroes ? NBD_FLAG_C_NO_ZEROES : 0));
    await client.sendOption(NBD_OPT_EXPORT_NAME, new TextEncoder().encode("disk"));
    const agreed = await result;
    assert.equal(agreed?.export.name, "disk");
    const reply = await client.receive(noZeroes ? 10 : 134);
    assert.equal(Number(new DataView(reply.buffer).getBigUint64(0)), 1 << 20);
    client.close();
    assert.equal(await client.closedByServer(), true);
    await done();
  }
});

Deno.test("handshake: NBD_OPT_EXPORT_NAME of an unknown export ends the session", async () => {
  const { client, result, done } = setup();
  await client.greet();
  await client.sendOption(NBD_OPT_EXPORT_NAME, new TextEncoder().encode("nope"));
  assert.equal(await result, null);
  await done();
});

Deno.test("handshake: protocol violations throw", async (t) => {
  const cases: [string, (client: RawClient) => Promise<unknown>, unknown][] = [
    ["unknown client flags", (c) => c.greet(0xff), SyntaxError],
    ["bad option magic", async (c) => {
      await c.greet();
      const option = encodeOption(NBD_OPT_LIST);
      option[0] = 0;
      await c.send(option);
    }, SyntaxError],
    ["oversized option", async (c) => {
      await c.greet();
      const header = encodeOption(NBD_OPT_GO);
      new DataView(header.buffer).setUint32(12, NBD_OPTION_LENGTH_BYTES_MAX + 1);
      await c.send(header);
    }, SyntaxError],
    ["truncated option data", async (c) => {
      await c.greet();
      const header = encodeOption(NBD_OPT_GO, new Uint8Array(100));
      await c.send(header.subarray(0, 50));
      c.close();
    }, Deno.errors.UnexpectedEof],
    ["truncated option header", async (c) => {
      await c.greet();
      await c.send(encodeOption(NBD_OPT_GO).subarray(0, 7));
      c.close();
    }, Deno.errors.UnexpectedEof],
  ];
  for (const [name, act, expected] of cases) {
    await t.step(name, async () => {
      const { client, result, done } = setup();
      await act(client);
      await assert.rejects(result, expected as typeof Error);
      await done();
    });
  }
});

Deno.test("handshake: a client that never chooses is cut off after many options", async () => {
  const { client, result, done } = setup();
  await client.greet();
  const replies = (async () => {
    try {
      for (;;) await client.readOptionReply();
    } catch {
      // The server hung up.
    }
  })();
  for (let i = 0; i <= HANDSHAKE_OPTIONS_MAX; i++) await client.sendOption(42);
  await assert.rejects(result, SyntaxError);
  await done();
  await replies;
});

Deno.test("handshake: while shutting down, options get NBD_REP_ERR_SHUTDOWN", async () => {
  const { client, result, done } = setup({ shuttingDown: true });
  await client.greet();
  const go = await client.go("disk");
  assert.ok(!("sizeBytes" in go));
  assert.equal(go.replyType, NBD_REP_ERR_SHUTDOWN);
  await client.sendOption(NBD_OPT_ABORT);
  assert.equal((await client.readOptionReply()).replyType, NBD_REP_ACK);
  assert.equal(await result, null);
  await done();
});
