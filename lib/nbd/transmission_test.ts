import assert from "node:assert/strict";
import { OutOfSpaceError } from "../errors.ts";
import { pipe } from "./_pipe.ts";
import { RawClient } from "./_raw_client.ts";
import { ScriptedExport } from "./_scripted_export.ts";
import { Budget } from "./budget.ts";
import { ByteReader } from "./byte_reader.ts";
import type { NbdExport } from "./export.ts";
import { silentLogger } from "./log.ts";
import { MemoryExportProvider } from "./memory_export.ts";
import {
  encodeRequest,
  NBD_BASE_ALLOCATION_ID,
  NBD_BLOCK_STATUS_DESCRIPTORS_MAX,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_MAX_REQUEST_BYTES,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
} from "./protocol.ts";
import { SerialWriter } from "./serial_writer.ts";
import { Transmission } from "./transmission.ts";

const MiB = 1024 * 1024;

interface Setup {
  structured?: boolean;
  readOnly?: boolean;
  sizeBytes?: number;
  requestsInFlightMax?: number;
  bufferedBytesMax?: number;
  readBytesInFlightMax?: number;
  serverBytes?: Budget;
  shuttingDown?: () => boolean;
  blockStatus?: boolean;
}

async function setup(options: Setup = {}) {
  const provider = new MemoryExportProvider([
    { name: "disk", sizeBytes: options.sizeBytes ?? 8 * MiB, readOnly: options.readOnly },
  ]);
  const exp = new ScriptedExport(await provider.open("disk"));
  const [serverEnd, clientEnd] = pipe();
  const structured = options.structured ?? true;
  /** Writes the server made to its socket. */
  const socketWrites = { count: 0 };
  const transmission = new Transmission({
    reader: new ByteReader(serverEnd),
    writer: new SerialWriter({
      write(bytes) {
        socketWrites.count++;
        return serverEnd.write(bytes);
      },
    }),
    export: exp,
    structuredReplies: structured,
    blockStatus: options.blockStatus,
    limits: {
      requestsInFlightMax: options.requestsInFlightMax ?? 128,
      bufferedBytesMax: options.bufferedBytesMax ?? 64 * MiB,
      readBytesInFlightMax: options.readBytesInFlightMax ?? 64 * MiB,
    },
    serverBytes: options.serverBytes ?? new Budget(512 * MiB),
    isShuttingDown: options.shuttingDown ?? (() => false),
    log: silentLogger,
  });
  const run = transmission.run();
  run.catch(() => {}); // Observed by the tests that expect a failure.
  const client = new RawClient(clientEnd);
  client.structuredReplies = structured;
  const finish = async () => {
    clientEnd.close();
    await run.catch(() => {});
    serverEnd.close();
    await exp.close();
  };
  return { exp, transmission, run, client, finish, serverEnd, socketWrites };
}

const pattern = (length: number, seed: number) =>
  Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);

const until = async (condition: () => boolean, what: string) => {
  for (let i = 0; i < 500; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`timed out waiting for ${what}`);
};

for (const structured of [true, false]) {
  Deno.test(`transmission (${structured ? "structured" : "simple"}): write, read back`, async () => {
    const { client, finish } = await setup({ structured });
    const data = pattern(10_000, 1);
    const write = await client.call(
      { type: NBD_CMD_WRITE, flags: 0, offsetBytes: 777, lengthBytes: data.length },
      data,
    );
    assert.equal(write.errno, 0);
    const read = await client.call({
      type: NBD_CMD_READ,
      flags: 0,
      offsetBytes: 777,
      lengthBytes: data.length,
    });
    assert.equal(read.errno, 0);
    assert.equal(read.kind, structured ? "structured" : "simple");
    assert.deepEqual(read.data, data);
    const zeroes = await client.call({
      type: NBD_CMD_READ,
      flags: 0,
      offsetBytes: 0,
      lengthBytes: 777,
    });
    assert.ok(zeroes.data.every((b) => b === 0));
    await finish();
  });

  Deno.test(`transmission (${structured ? "structured" : "simple"}): bad requests get errnos and the connection goes on`, async () => {
    const { client, exp, finish } = await setup({ structured, sizeBytes: MiB });
    const cases: [string, Parameters<RawClient["call"]>[0], number, Uint8Array?][] = [
      [
        "read past end",
        { type: NBD_CMD_READ, flags: 0, offsetBytes: MiB, lengthBytes: 1 },
        NBD_EINVAL,
      ],
      [
        "read at 2^63",
        { type: NBD_CMD_READ, flags: 0, offsetBytes: 2 ** 53 - 1, lengthBytes: 1 },
        NBD_EINVAL,
      ],
      [
        "write past end",
        {
          type: NBD_CMD_WRITE,
          flags: 0,
          offsetBytes: MiB - 1,
          lengthBytes: 2,
        },
        NBD_ENOSPC,
        new Uint8Array(2),
      ],
      [
        "zero-length read",
        { type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 0 },
        NBD_EINVAL,
      ],
      ["oversized read", {
        type: NBD_CMD_READ,
        flags: 0,
        offsetBytes: 0,
        lengthBytes: NBD_MAX_REQUEST_BYTES + 1,
      }, NBD_EINVAL],
      ["unknown command", { type: 99, flags: 0, offsetBytes: 0, lengthBytes: 1 }, NBD_EINVAL],
      [
        "bad flag",
        { type: NBD_CMD_WRITE, flags: NBD_CMD_FLAG_NO_HOLE, offsetBytes: 0, lengthBytes: 3 },
        NBD_EINVAL,
        new Uint8Array(3),
      ],
      [
        "trim past end",
        { type: NBD_CMD_TRIM, flags: 0, offsetBytes: 0, lengthBytes: MiB + 1 },
        NBD_EINVAL,
      ],
      [
        "flush with a length",
        { type: NBD_CMD_FLUSH, flags: 0, offsetBytes: 0, lengthBytes: 1 },
        NBD_EINVAL,
      ],
    ];
    for (const [name, request, errno, payload] of cases) {
      const reply = await client.call(request, payload);
      assert.equal(reply.errno, errno, name);
      if (structured) assert.notEqual(reply.message, "", name);
    }
    // Nothing reached the export, and the connection still works.
    assert.deepEqual(exp.calls, []);
    const ok = await client.call({ type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 1 });
    assert.equal(ok.errno, 0);
    await finish();
  });
}

Deno.test("transmission: a read-only export refuses writes with EPERM, payload consumed", async () => {
  const { client, exp, finish } = await setup({ readOnly: true });
  const payload = pattern(5000, 3);
  const write = await client.call(
    { type: NBD_CMD_WRITE, flags: 0, offsetBytes: 0, lengthBytes: payload.length },
    payload,
  );
  assert.equal(write.errno, NBD_EPERM);
  for (const type of [NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES]) {
    assert.equal(
      (await client.call({ type, flags: 0, offsetBytes: 0, lengthBytes: 1 })).errno,
      NBD_EPERM,
    );
  }
  const read = await client.call({ type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 4 });
  assert.equal(read.errno, 0);
  assert.deepEqual(exp.calls, ["read 0+4"]);
  await finish();
});

Deno.test("transmission: export errors map to errnos with messages", async () => {
  const { client, exp, finish } = await setup();
  exp.failure = (_op, offset) =>
    offset === 0
      ? new OutOfSpaceError("store full")
      : offset === 1
      ? new RangeError("bad range")
      : offset === 2
      ? new Error("disk on fire")
      : null;
  const write = (offsetBytes: number) =>
    client.call({ type: NBD_CMD_WRITE, flags: 0, offsetBytes, lengthBytes: 1 }, new Uint8Array(1));
  const full = await write(0);
  assert.equal(full.errno, NBD_ENOSPC);
  assert.match(full.message, /store full/);
  assert.equal((await write(1)).errno, NBD_EINVAL);
  const broken = await client.call({
    type: NBD_CMD_READ,
    flags: 0,
    offsetBytes: 2,
    lengthBytes: 1,
  });
  assert.equal(broken.errno, NBD_EIO);
  assert.equal(broken.data.length, 0);
  assert.equal((await write(3)).errno, 0);
  await finish();
});

Deno.test("transmission: FUA, NO_HOLE, flush and trim reach the export", async () => {
  const { client, exp, finish } = await setup();
  await client.call(
    { type: NBD_CMD_WRITE, flags: NBD_CMD_FLAG_FUA, offsetBytes: 0, lengthBytes: 2 },
    new Uint8Array([1, 2]),
  );
  await client.call({ type: NBD_CMD_FLUSH, flags: 0, offsetBytes: 0, lengthBytes: 0 });
  await client.call({
    type: NBD_CMD_TRIM,
    flags: NBD_CMD_FLAG_FUA,
    offsetBytes: 0,
    lengthBytes: 1,
  });
  await client.call({
    type: NBD_CMD_WRITE_ZEROES,
    flags: NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA,
    offsetBytes: 1,
    lengthBytes: 1,
  });
  await client.call({ type: NBD_CMD_READ, flags: NBD_CMD_FLAG_DF, offsetBytes: 0, lengthBytes: 2 });
  assert.deepEqual(exp.calls, [
    "write 0+2 fua",
    "flush",
    "trim 0+1",
    "flush",
    "writeZeroes 1+1 fua noHole",
    "read 0+2",
  ]);
  const read = await client.call({ type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 2 });
  assert.deepEqual(read.data, new Uint8Array([0, 0]));
  await finish();
});

Deno.test("transmission: replies come back out of order, matched by handle", async () => {
  const { client, exp, finish } = await setup();
  exp.delayMs = (_op, offset) => (offset === 0 ? 50 : 0);
  const slow = await client.request({
    type: NBD_CMD_READ,
    flags: 0,
    offsetBytes: 0,
    lengthBytes: 8,
  });
  const fast = await client.request({
    type: NBD_CMD_READ,
    flags: 0,
    offsetBytes: 4096,
    lengthBytes: 8,
  });
  assert.equal((await client.readReply()).handle, fast);
  assert.equal((await client.readReply()).handle, slow);
  await finish();
});

Deno.test("transmission: replies to requests that arrive together leave in few writes", async () => {
  const { client, finish, socketWrites } = await setup();
  await client.requestBatch(Array.from({ length: 64 }, (_, i) => ({
    type: NBD_CMD_READ,
    flags: 0,
    offsetBytes: i * 4096,
    lengthBytes: 4096,
  })));
  const handles = new Set<bigint>();
  for (let i = 0; i < 64; i++) {
    const reply = await client.readReply();
    assert.equal(reply.errno, 0);
    handles.add(reply.handle);
  }
  assert.equal(handles.size, 64);
  // Without holding replies back, each left in a write of its own.
  assert.ok(socketWrites.count <= 4, `${socketWrites.count} writes for 64 replies`);
  // A request alone is answered at once, not held for company.
  const single = await client.call({
    type: NBD_CMD_READ,
    flags: 0,
    offsetBytes: 0,
    lengthBytes: 8,
  });
  assert.equal(single.errno, 0);
  await finish();
});

Deno.test("transmission: requests in flight are bounded; reading stops at the limit", async () => {
  const { client, exp, transmission, finish } = await setup({ requestsInFlightMax: 16 });
  exp.hold();
  for (let i = 0; i < 100; i++) {
    await client.request({ type: NBD_CMD_READ, flags: 0, offsetBytes: i, lengthBytes: 1 });
  }
  await until(() => transmission.inFlight === 16, "16 requests in flight");
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(transmission.inFlight, 16);
  assert.equal(exp.calls.length, 16);
  exp.open();
  const handles = new Set<bigint>();
  for (let i = 0; i < 100; i++) handles.add((await client.readReply()).handle);
  assert.equal(handles.size, 100);
  await finish();
});

Deno.test("transmission: reads in flight are bounded by bytes; a longer read runs alone; writes are not held", async () => {
  const { client, exp, transmission, finish } = await setup({
    sizeBytes: 16 * MiB,
    readBytesInFlightMax: 2 * MiB,
  });
  exp.hold();
  const read = (offsetBytes: number, lengthBytes: number) =>
    client.request({ type: NBD_CMD_READ, flags: 0, offsetBytes, lengthBytes });
  // Four 1 MiB reads: two are served, the others wait; so does everything behind them.
  for (let i = 0; i < 4; i++) await read(i * MiB, MiB);
  await client.request({ type: NBD_CMD_FLUSH, flags: 0, offsetBytes: 0, lengthBytes: 0 });
  await until(() => transmission.inFlight === 2, "2 reads in flight");
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(exp.calls.length, 2);
  exp.open();
  for (let i = 0; i < 5; i++) assert.equal((await client.readReply()).errno, 0);

  // A read longer than the bound waits for the others, then runs alone.
  exp.hold();
  await read(0, MiB);
  await read(0, 3 * MiB);
  await read(4 * MiB, 4096);
  await until(() => transmission.inFlight === 1, "the first read");
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(transmission.inFlight, 1);
  exp.open();
  const lengths = [];
  for (let i = 0; i < 3; i++) lengths.push((await client.readReply()).data.length);
  assert.deepEqual(lengths, [MiB, 3 * MiB, 4096]);

  // Writes are not held back by the bound.
  exp.hold();
  const payload = new Uint8Array(MiB);
  for (let i = 0; i < 6; i++) {
    await client.request(
      { type: NBD_CMD_WRITE, flags: 0, offsetBytes: i * MiB, lengthBytes: MiB },
      payload,
    );
  }
  await until(() => transmission.inFlight === 6, "6 writes in flight");
  exp.open();
  for (let i = 0; i < 6; i++) assert.equal((await client.readReply()).errno, 0);
  await finish();
});

Deno.test("transmission: bytes held are bounded per connection and server-wide", async (t) => {
  const payload = new Uint8Array(MiB);
  const fill = async (client: RawClient, count: number) => {
    for (let i = 0; i < count; i++) {
      await client.request(
        { type: NBD_CMD_WRITE, flags: 0, offsetBytes: (i % 8) * MiB, lengthBytes: MiB },
        payload,
      );
    }
  };
  await t.step("per connection", async () => {
    const { client, exp, transmission, finish } = await setup({ bufferedBytesMax: 32 * MiB });
    exp.hold();
    await fill(client, 60);
    await until(() => transmission.inFlight === 32, "32 writes in flight");
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(transmission.inFlight, 32);
    assert.equal(transmission.bufferedBytes, 32 * MiB);
    exp.open();
    for (let i = 0; i < 60; i++) assert.equal((await client.readReply()).errno, 0);
    assert.equal(transmission.bufferedBytes, 0);
    await finish();
  });
  await t.step("server-wide", async () => {
    const serverBytes = new Budget(40 * MiB);
    const { client, exp, transmission, finish } = await setup({ serverBytes });
    exp.hold();
    await fill(client, 60);
    await until(() => serverBytes.used === 40 * MiB && serverBytes.waiting === 1, "the budget");
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(transmission.inFlight, 40);
    assert.equal(serverBytes.used, 40 * MiB);
    exp.open();
    for (let i = 0; i < 60; i++) assert.equal((await client.readReply()).errno, 0);
    assert.equal(serverBytes.used, 0);
    await finish();
  });
});

Deno.test("transmission: an oversized write is refused, then the connection ends", async () => {
  const { client, run, finish } = await setup();
  const reply = client.call({
    type: NBD_CMD_WRITE,
    flags: 0,
    offsetBytes: 0,
    lengthBytes: NBD_MAX_REQUEST_BYTES + 1,
  });
  assert.equal((await reply).errno, NBD_EINVAL);
  assert.equal(await run, "protocol-error");
  await finish();
});

Deno.test("transmission: NBD_CMD_DISC ends after requests in flight are answered", async () => {
  const { client, exp, run, finish } = await setup();
  exp.hold();
  const handle = await client.request({
    type: NBD_CMD_READ,
    flags: 0,
    offsetBytes: 0,
    lengthBytes: 4,
  });
  await client.request({ type: NBD_CMD_DISC, flags: 0, offsetBytes: 0, lengthBytes: 0 });
  let ended = false;
  run.then(() => ended = true);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(ended, false);
  exp.open();
  assert.equal(await run, "disconnect");
  assert.equal((await client.readReply()).handle, handle);
  await finish();
});

Deno.test("transmission: a bad magic ends the connection; a clean close is eof", async () => {
  const bad = await setup();
  const request = encodeRequest({
    type: NBD_CMD_READ,
    flags: 0,
    handle: 1n,
    offsetBytes: 0,
    lengthBytes: 1,
  });
  request[0] = 0;
  await bad.client.send(request);
  assert.equal(await bad.run, "protocol-error");
  await bad.finish();

  const clean = await setup();
  clean.client.close();
  assert.equal(await clean.run, "eof");
  await clean.finish();
});

Deno.test("transmission: a client vanishing mid-write fails the loop, in flight work settles", async () => {
  const { client, exp, run, finish } = await setup();
  exp.hold();
  await client.request({ type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 4 });
  const header = encodeRequest({
    type: NBD_CMD_WRITE,
    flags: 0,
    handle: 9n,
    offsetBytes: 0,
    lengthBytes: 4096,
  });
  await client.send(header);
  await client.send(new Uint8Array(100));
  client.close();
  setTimeout(() => exp.open(), 10);
  await assert.rejects(run, Deno.errors.UnexpectedEof);
  assert.equal(exp.running, 0);
  await finish();
});

Deno.test("transmission: while shutting down, new requests get ESHUTDOWN", async () => {
  let shuttingDown = false;
  const { client, finish } = await setup({ shuttingDown: () => shuttingDown });
  assert.equal(
    (await client.call({ type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 1 })).errno,
    0,
  );
  shuttingDown = true;
  const write = await client.call(
    { type: NBD_CMD_WRITE, flags: 0, offsetBytes: 0, lengthBytes: 3 },
    new Uint8Array(3),
  );
  assert.equal(write.errno, NBD_ESHUTDOWN);
  assert.equal(
    (await client.call({ type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 1 })).errno,
    NBD_ESHUTDOWN,
  );
  await finish();
});

Deno.test("transmission: NBD_CMD_BLOCK_STATUS clamps, merges and bounds the export's extents", async () => {
  const { client, exp, finish } = await setup({ blockStatus: true, sizeBytes: MiB });
  const hole = NBD_STATE_HOLE | NBD_STATE_ZERO;
  const asked: string[] = [];
  (exp as NbdExport).blockStatus = (offsetBytes, lengthBytes) => {
    asked.push(`${offsetBytes}+${lengthBytes}`);
    // 4 KiB runs alternating in pairs: data, data, hole, hole, ... plus one of length 0.
    const extents = [{ lengthBytes: 0, flags: 0 }];
    for (let i = 0; i < 400; i++) {
      extents.push({ lengthBytes: 4096, flags: (i >> 1) & 1 ? hole : 0 });
    }
    return Promise.resolve(extents);
  };
  const status = (offsetBytes: number, lengthBytes: number, flags = 0) =>
    client.call({ type: NBD_CMD_BLOCK_STATUS, flags, offsetBytes, lengthBytes });
  let reply = await status(0, 20_000);
  assert.equal(reply.errno, 0);
  assert.equal(reply.contextId, NBD_BASE_ALLOCATION_ID);
  assert.deepEqual(reply.extents, [
    { lengthBytes: 8192, flags: 0 },
    { lengthBytes: 8192, flags: hole },
    { lengthBytes: 20_000 - 16_384, flags: 0 }, // clamped to the request
  ]);
  reply = await status(0, 20_000, NBD_CMD_FLAG_REQ_ONE);
  assert.deepEqual(reply.extents, [{ lengthBytes: 8192, flags: 0 }]);
  // More runs than a reply carries: it covers a prefix, the client asks again for the rest.
  (exp as NbdExport).blockStatus = () =>
    Promise.resolve(
      Array.from({ length: 3000 }, (_, i) => ({ lengthBytes: 256, flags: i % 2 ? hole : 0 })),
    );
  reply = await status(0, MiB);
  assert.equal(reply.extents!.length, NBD_BLOCK_STATUS_DESCRIPTORS_MAX);
  assert.equal(reply.errno, 0);
  // Out of range, and a bad flag.
  assert.equal((await status(MiB - 10, 20)).errno, NBD_EINVAL);
  assert.equal((await status(0, 10, NBD_CMD_FLAG_FUA)).errno, NBD_EINVAL);
  assert.deepEqual(asked, ["0+20000", "0+20000"]);
  await finish();
});

Deno.test("transmission: NBD_CMD_BLOCK_STATUS without a selected context is EINVAL; an export that cannot tell is all data", async () => {
  let { client, finish } = await setup({ blockStatus: false });
  const request = { type: NBD_CMD_BLOCK_STATUS, flags: 0, offsetBytes: 0, lengthBytes: 4096 };
  const refused = await client.call(request);
  assert.equal(refused.errno, NBD_EINVAL);
  assert.match(refused.message, /no metadata context/);
  await finish();
  ({ client, finish } = await setup({ blockStatus: true }));
  const reply = await client.call({ ...request, lengthBytes: 3 * MiB });
  assert.deepEqual(reply.extents, [{ lengthBytes: 3 * MiB, flags: 0 }]);
  await finish();
});
