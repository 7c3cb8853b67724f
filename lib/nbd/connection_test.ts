import assert from "node:assert/strict";
import { pipe } from "./_pipe.ts";
import { RawClient } from "./_raw_client.ts";
import { ScriptedExport } from "./_scripted_export.ts";
import { Budget } from "./budget.ts";
import { NbdConnection } from "./connection.ts";
import type { NbdExport, NbdExportProvider } from "./export.ts";
import type { NbdLogEntry } from "./log.ts";
import { MemoryExportProvider } from "./memory_export.ts";
import { NBD_CMD_DISC, NBD_CMD_READ, NBD_CMD_WRITE, NBD_ESHUTDOWN } from "./protocol.ts";

const MiB = 1024 * 1024;

function setup(options: { handshakeTimeoutMs?: number } = {}) {
  const memory = new MemoryExportProvider([{ name: "disk", sizeBytes: MiB }]);
  const opened: ScriptedExport[] = [];
  const provider: NbdExportProvider = {
    list: () => memory.list(),
    async open(name: string): Promise<NbdExport> {
      const exp = new ScriptedExport(await memory.open(name));
      opened.push(exp);
      return exp;
    },
  };
  let shuttingDown = false;
  const logs: NbdLogEntry[] = [];
  const [serverEnd, clientEnd] = pipe();
  const connection = new NbdConnection(serverEnd, "test:1", {
    provider,
    limits: {
      requestsInFlightMax: 128,
      bufferedBytesMax: 64 * MiB,
      readBytesInFlightMax: 2 * MiB,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
    },
    serverBytes: new Budget(512 * MiB),
    isShuttingDown: () => shuttingDown,
    log: (entry) => logs.push(entry),
  });
  const served = connection.serve();
  const client = new RawClient(clientEnd);
  return {
    memory,
    opened,
    connection,
    served,
    client,
    serverEnd,
    logs,
    startShutdown: () => shuttingDown = true,
  };
}

Deno.test("connection: attach, write, disconnect; the export is flushed and closed", async () => {
  const { memory, opened, connection, served, client, serverEnd, logs } = setup();
  assert.equal(connection.phase, "handshake");
  await client.attach("disk");
  const write = await client.call(
    { type: NBD_CMD_WRITE, flags: 0, offsetBytes: 0, lengthBytes: 3 },
    new Uint8Array([1, 2, 3]),
  );
  assert.equal(write.errno, 0);
  assert.equal(connection.phase, "transmission");
  await client.request({ type: NBD_CMD_DISC, flags: 0, offsetBytes: 0, lengthBytes: 0 });
  await served;
  assert.equal(connection.phase, "closed");
  assert.equal(serverEnd.closed, true);
  assert.deepEqual(opened[0]!.calls, ["write 0+3", "flush"]);
  assert.equal(opened[0]!.closeCount, 1);
  assert.equal(memory.openCount, 0);
  assert.ok(logs.every((entry) => entry.peer === "test:1"));
  assert.equal(await client.closedByServer(), true);
});

Deno.test("connection: a silent client is dropped when the handshake times out", async () => {
  const { served, client, serverEnd, logs } = setup({ handshakeTimeoutMs: 30 });
  await client.greet();
  await served;
  assert.equal(serverEnd.closed, true);
  assert.ok(logs.some((entry) => entry.message.includes("timed out")));
});

Deno.test("connection: a client vanishing mid-request releases the export", async () => {
  const { memory, opened, served, client } = setup();
  await client.attach("disk");
  opened[0]!.hold();
  await client.request({ type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 10 });
  await client.send(new Uint8Array(13)); // Half a request header.
  client.close();
  setTimeout(() => opened[0]!.open(), 10);
  await served;
  assert.equal(memory.openCount, 0);
  assert.equal(opened[0]!.running, 0);
});

Deno.test("connection: a protocol error during the handshake closes only the socket", async () => {
  const { served, client, serverEnd, logs } = setup();
  await client.greet(0x80);
  await served;
  assert.equal(serverEnd.closed, true);
  assert.ok(logs.some((entry) => entry.level === "warn" && entry.message.includes("protocol")));
});

Deno.test("connection: shutdown answers requests in flight, refuses new ones, then closes", async () => {
  const { memory, opened, connection, served, client, startShutdown } = setup();
  await client.attach("disk");
  opened[0]!.hold();
  const held = await client.request({
    type: NBD_CMD_READ,
    flags: 0,
    offsetBytes: 0,
    lengthBytes: 4,
  });
  await new Promise((resolve) => setTimeout(resolve, 5));
  startShutdown();
  const shutdown = connection.shutdown(5_000);
  const refused = await client.call({
    type: NBD_CMD_READ,
    flags: 0,
    offsetBytes: 8,
    lengthBytes: 4,
  });
  assert.equal(refused.errno, NBD_ESHUTDOWN);
  opened[0]!.open();
  const answered = await client.readReply();
  assert.equal(answered.handle, held);
  assert.equal(answered.errno, 0);
  await shutdown;
  await served;
  assert.equal(memory.openCount, 0);
});

Deno.test("connection: shutdown is bounded when the export hangs", async () => {
  const { opened, connection, served, client, startShutdown } = setup();
  await client.attach("disk");
  opened[0]!.hold();
  await client.request({ type: NBD_CMD_READ, flags: 0, offsetBytes: 0, lengthBytes: 4 });
  await new Promise((resolve) => setTimeout(resolve, 5));
  startShutdown();
  const started = Date.now();
  await connection.shutdown(50);
  assert.ok(Date.now() - started < 1_000);
  opened[0]!.open(); // Let the hung request finish so the test ends clean.
  await served;
});
