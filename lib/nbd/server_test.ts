import assert from "node:assert/strict";
import { RawClient } from "./_raw_client.ts";
import { ScriptedExport } from "./_scripted_export.ts";
import type { NbdExport, NbdExportProvider } from "./export.ts";
import type { NbdLogEntry } from "./log.ts";
import { MemoryExportProvider } from "./memory_export.ts";
import {
  encodeRequest,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_MAX_REQUEST_BYTES,
  NBD_OPT_ABORT,
  NBD_REP_ACK,
} from "./protocol.ts";
import { NbdServer, type NbdServerLimits } from "./server.ts";

const MiB = 1024 * 1024;

function start(limits: Partial<NbdServerLimits> = {}) {
  const memory = new MemoryExportProvider([
    { name: "disk", sizeBytes: 16 * MiB },
    { name: "other", sizeBytes: MiB },
  ]);
  const opened: ScriptedExport[] = [];
  const provider: NbdExportProvider = {
    list: () => memory.list(),
    async open(name: string): Promise<NbdExport> {
      const exp = new ScriptedExport(await memory.open(name));
      opened.push(exp);
      return exp;
    },
  };
  const logs: NbdLogEntry[] = [];
  const server = NbdServer.listen({
    provider,
    port: 0,
    logger: (entry) => logs.push(entry),
    limits,
  });
  return { server, memory, opened, logs };
}

const until = async (condition: () => boolean, what: string) => {
  for (let i = 0; i < 1000; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
};

Deno.test("server: listens on an ephemeral port and closes cleanly", async () => {
  const { server } = start();
  assert.ok(server.port > 0);
  assert.equal(server.hostname, "127.0.0.1");
  assert.deepEqual(server.stats(), { connections: 0, requestsInFlight: 0, bufferedBytes: 0 });
  await server.close();
  await server.close();
  await assert.rejects(() => Deno.connect({ port: server.port }), Deno.errors.ConnectionRefused);
});

Deno.test("server: bad limits are refused", () => {
  const provider = new MemoryExportProvider([]);
  assert.throws(
    () => NbdServer.listen({ provider, port: 0, limits: { bufferedBytesMax: MiB } }),
    RangeError,
  );
  assert.throws(
    () => NbdServer.listen({ provider, port: 0, limits: { requestsInFlightMax: 0 } }),
    RangeError,
  );
});

Deno.test("server: NBD_OPT_ABORT is acknowledged and the server keeps serving", async () => {
  const { server } = start();
  for (let i = 0; i < 3; i++) {
    const client = await RawClient.connect(server.port);
    await client.greet();
    await client.sendOption(NBD_OPT_ABORT);
    assert.equal((await client.readOptionReply()).replyType, NBD_REP_ACK);
    assert.equal(await client.closedByServer(), true);
    client.close();
  }
  const client = await RawClient.connect(server.port);
  await client.attach("disk");
  client.close();
  await server.close();
});

Deno.test("server: many connections at once, each with many requests in flight", async () => {
  const { server, memory } = start();
  const clients = await Promise.all(
    Array.from({ length: 8 }, () => RawClient.connect(server.port)),
  );
  await Promise.all(clients.map((c, i) => c.attach("disk", { structured: i % 2 === 0 })));
  await Promise.all(clients.map(async (client, index) => {
    const region = index * 2 * MiB;
    const data = Uint8Array.from({ length: 64 * 1024 }, (_, i) => (i + index) & 0xff);
    for (let i = 0; i < 32; i++) {
      await client.request(
        {
          type: NBD_CMD_WRITE,
          flags: 0,
          offsetBytes: region + i * data.length,
          lengthBytes: data.length,
        },
        data,
      );
    }
    for (let i = 0; i < 32; i++) assert.equal((await client.readReply()).errno, 0);
    for (let i = 0; i < 32; i++) {
      await client.request({
        type: NBD_CMD_READ,
        flags: 0,
        offsetBytes: region + i * data.length,
        lengthBytes: data.length,
      });
    }
    for (let i = 0; i < 32; i++) assert.deepEqual((await client.readReply()).data, data);
  }));
  assert.equal(server.stats().connections, 8);
  clients.forEach((c) => c.close());
  await until(() => server.stats().connections === 0, "connections to end");
  assert.equal(memory.openCount, 0);
  await server.close();
});

Deno.test("server: a bad connection does not disturb a good one", async () => {
  const { server, logs } = start();
  const good = await RawClient.connect(server.port);
  await good.attach("disk");
  const bad = await RawClient.connect(server.port);
  await bad.attach("disk");
  const request = encodeRequest({
    type: NBD_CMD_READ,
    flags: 0,
    handle: 1n,
    offsetBytes: 0,
    lengthBytes: 1,
  });
  request[1] = 0x42;
  await bad.send(request);
  assert.equal(await bad.closedByServer(), true);
  const read = await good.call({ type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 1 });
  assert.equal(read.errno, 0);
  assert.ok(logs.some((entry) => entry.message.includes("bad request")));
  good.close();
  bad.close();
  await server.close();
});

Deno.test("server: an oversized write closes that connection only", async () => {
  const { server } = start();
  const client = await RawClient.connect(server.port);
  await client.attach("disk");
  await client.request({
    type: NBD_CMD_WRITE,
    flags: 0,
    offsetBytes: 0,
    lengthBytes: NBD_MAX_REQUEST_BYTES * 2,
  });
  assert.notEqual((await client.readReply()).errno, 0);
  assert.equal(await client.closedByServer(), true);
  client.close();
  await server.close();
});

Deno.test("server: connections past the limit are closed on arrival", async () => {
  const { server, logs } = start({ connectionsMax: 2 });
  const a = await RawClient.connect(server.port);
  const b = await RawClient.connect(server.port);
  await a.greet();
  await b.greet();
  const c = await RawClient.connect(server.port);
  assert.equal(await c.closedByServer(), true);
  assert.ok(logs.some((entry) => entry.message.includes("limit")));
  [a, b, c].forEach((client) => client.close());
  await server.close();
});

Deno.test("server: a client vanishing mid-request leaks nothing", async () => {
  const { server, memory } = start();
  for (let i = 0; i < 10; i++) {
    const client = await RawClient.connect(server.port);
    await client.attach("disk");
    await client.send(
      encodeRequest({
        type: NBD_CMD_WRITE,
        flags: 0,
        handle: 1n,
        offsetBytes: 0,
        lengthBytes: MiB,
      }),
    );
    await client.send(new Uint8Array(1000));
    client.close();
  }
  await until(() => server.stats().connections === 0, "connections to end");
  assert.equal(memory.openCount, 0);
  assert.equal(server.stats().bufferedBytes, 0);
  await server.close();
});

Deno.test("server: close lets requests in flight finish and closes exports", async () => {
  const { server, memory, opened } = start();
  const client = await RawClient.connect(server.port);
  await client.attach("disk");
  const handshaking = await RawClient.connect(server.port);
  await handshaking.greet();
  await until(() => opened.length === 1, "the export to open");
  opened[0]!.delayMs = () => 100;
  const handle = await client.request({
    type: NBD_CMD_READ,
    flags: 0,
    offsetBytes: 0,
    lengthBytes: 4,
  });
  await until(() => server.stats().requestsInFlight === 1, "the request to start");
  const closing = server.close();
  const reply = await client.readReply();
  assert.equal(reply.handle, handle);
  assert.equal(reply.errno, 0);
  await closing;
  assert.equal(await client.closedByServer(), true);
  assert.equal(await handshaking.closedByServer(), true);
  assert.equal(memory.openCount, 0);
  assert.deepEqual(opened[0]!.calls, ["read 0+4", "flush"]);
  client.close();
  handshaking.close();
});

Deno.test("server: counts requests, errors, bytes and latency by command; connections accepted and refused", async () => {
  // A timed request reads the clock twice, at dispatch and once its reply is written: 1 ms
  // apart. The first request of each command is timed.
  let nowMs = 0;
  const server = NbdServer.listen({
    provider: new MemoryExportProvider([{ name: "disk", sizeBytes: MiB }]),
    port: 0,
    limits: { connectionsMax: 1 },
    nowMs: () => nowMs++,
  });
  const client = await RawClient.connect(server.port);
  await client.attach("disk");
  const data = new Uint8Array(4096).fill(7);
  const replies = [
    await client.call({ type: NBD_CMD_WRITE, flags: 0, offsetBytes: 0, lengthBytes: 4096 }, data),
    await client.call({ type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 4096 }),
    await client.call({ type: NBD_CMD_READ, flags: 0, offsetBytes: MiB, lengthBytes: 4096 }),
    await client.call({ type: NBD_CMD_FLUSH, flags: 0, offsetBytes: 0, lengthBytes: 0 }),
    await client.call({ type: NBD_CMD_TRIM, flags: 0, offsetBytes: 0, lengthBytes: 8192 }),
    await client.call({ type: NBD_CMD_WRITE_ZEROES, flags: 0, offsetBytes: 0, lengthBytes: 512 }),
  ];
  assert.deepEqual(replies.map((reply) => reply.errno !== 0), [
    false,
    false,
    true,
    false,
    false,
    false,
  ]);
  const refused = await RawClient.connect(server.port);
  assert.equal(await refused.closedByServer(), true);
  const counters = server.counters();
  const summary = Object.fromEntries(
    Object.entries(counters.commands).map((
      [command, c],
    ) => [command, [c.requests, c.errors, c.bytes]]),
  );
  assert.deepEqual(summary, {
    read: [2, 1, 4096],
    write: [1, 0, 4096],
    flush: [1, 0, 0],
    trim: [1, 0, 8192],
    write_zeroes: [1, 0, 512],
    block_status: [0, 0, 0],
  });
  assert.equal(counters.commands.read.timed, 1);
  assert.equal(counters.commands.read.seconds, 0.001);
  assert.equal(counters.commands.read.buckets[5], 1, "1 ms is above 0.8 ms and within 1.6 ms");
  assert.equal(counters.commands.trim.timed, 1);
  assert.equal(counters.connectionsAccepted, 1);
  assert.equal(counters.connectionsRefused, 1);
  client.close();
  refused.close();
  await server.close();
});
