/**
 * Fuzzes the NBD server in its own process: many raw TCP connections send
 * random bytes and mutated handshake and transmission traffic (truncated
 * messages, wrong magics, huge lengths, bad offsets, disconnects mid-request).
 * After every round a well-behaved client must still be served correctly,
 * its acknowledged writes must be intact, the server must hold no
 * connections, exports or buffers for the clients that left, and its memory
 * must stay bounded.
 *
 * Seeded by `TORUS_SEED` (or a random seed, printed on failure).
 */
import assert from "node:assert/strict";
import { RawClient } from "../../lib/nbd/_raw_client.ts";
import {
  encodeInfoRequest,
  encodeMetaContextRequest,
  encodeOption,
  encodeRequest,
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
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_NAME,
  NBD_MAX_REQUEST_BYTES,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  type NbdRequest,
} from "../../lib/nbd/protocol.ts";
import { Prng, seedFromEnv } from "../../lib/prng.ts";
import { runToolOk } from "./_tools.ts";

const MiB = 1024 * 1024;
/** How long the fuzz runs, in milliseconds; `TORUS_FUZZ_MS` overrides it. */
const FUZZ_DURATION_MS = Number(Deno.env.get("TORUS_FUZZ_MS") ?? 10_000);
/** Most rounds, whatever the time. */
const FUZZ_ROUNDS_MAX = 400;
/** Hostile connections per round, all at once. */
const FUZZ_CONNECTIONS_PER_ROUND = 16;
/** Milliseconds a hostile connection lives at most before the fuzzer hangs up. */
const FUZZ_SCENARIO_TIMEOUT_MS = 1_500;
/** Size of each export of the fuzzed server. */
const EXPORT_BYTES = 16 * MiB;
/** Server-wide buffer budget of the fuzzed server: keeps the memory bound meaningful. */
const SERVER_BUFFERED_BYTES_MAX = 128 * MiB;
/** Rounds before memory is sampled as the baseline (allocators warm up). */
const WARMUP_ROUNDS = 3;
/** Most the server's RSS may grow over its post-warm-up baseline. */
const RSS_GROWTH_MAX_BYTES = 256 * MiB;
/** Most RSS the server may ever reach. */
const RSS_MAX_BYTES = 1024 * MiB;
/** Milliseconds the server has to release what hostile clients left behind. */
const SETTLE_TIMEOUT_MS = 10_000;

interface ServerStats {
  connections: number;
  requestsInFlight: number;
  bufferedBytes: number;
  openExports: number;
  rssBytes: number;
}

/** The server under test, in a child process. */
class ServerProcess {
  readonly port: number;
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncIterator<string>;
  #stderr: Promise<string>;
  #exited = false;

  private constructor(
    child: Deno.ChildProcess,
    lines: AsyncIterator<string>,
    port: number,
    stderr: Promise<string>,
  ) {
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#lines = lines;
    this.port = port;
    this.#stderr = stderr;
    child.status.then(() => this.#exited = true);
  }

  static async start(): Promise<ServerProcess> {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./_serve.ts", import.meta.url).pathname,
        "--export",
        `fuzz:${EXPORT_BYTES}`,
        "--export",
        `good:${EXPORT_BYTES}`,
        "--limit",
        `serverBufferedBytesMax=${SERVER_BUFFERED_BYTES_MAX}`,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines())
      [Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) throw new Error(`server did not start:\n${await stderr}`);
    return new ServerProcess(child, lines, JSON.parse(first.value).port, stderr);
  }

  get exited(): boolean {
    return this.#exited;
  }

  async stats(): Promise<ServerStats> {
    if (this.#exited) throw new Error(`the server exited:\n${await this.#stderr}`);
    await this.#stdin.write(new TextEncoder().encode("stats\n"));
    const line = await this.#lines.next();
    if (line.done) throw new Error(`the server exited:\n${await this.#stderr}`);
    return JSON.parse(line.value);
  }

  async stop(): Promise<string> {
    try {
      await this.#stdin.write(new TextEncoder().encode("close\n"));
      await this.#stdin.close();
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
    }, 15_000);
    const status = await this.#child.status;
    clearTimeout(timer);
    while (!(await this.#lines.next()).done) {
      // Drain stdout.
    }
    const stderr = await this.#stderr;
    if (!status.success) throw new Error(`server exited with ${status.code}:\n${stderr}`);
    return stderr;
  }
}

function splitLines(): TransformStream<string, string> {
  let pending = "";
  return new TransformStream({
    transform(chunk, controller) {
      pending += chunk;
      let newline;
      while ((newline = pending.indexOf("\n")) >= 0) {
        controller.enqueue(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
      }
    },
    flush(controller) {
      if (pending !== "") controller.enqueue(pending);
    },
  });
}

// ---------------------------------------------------------------------------
// Hostile traffic

const pick = <T>(prng: Prng, items: readonly T[]): T => items[prng.nextInt(items.length)]!;
const randomBytes = (prng: Prng, length: number) => prng.fill(new Uint8Array(length));

/** Flips, overwrites or truncates a message, or leaves it alone. */
function mutate(prng: Prng, message: Uint8Array): Uint8Array {
  const out = message.slice();
  switch (prng.nextInt(6)) {
    case 0: // Flip a few bytes.
      for (let i = 0, n = 1 + prng.nextInt(3); i < n && out.length > 0; i++) {
        const at = prng.nextInt(out.length);
        out[at] = out[at]! ^ (1 + prng.nextInt(255));
      }
      return out;
    case 1: // Truncate.
      return out.subarray(0, prng.nextInt(out.length + 1));
    case 2: // Break the magic.
      if (out.length > 0) out[0] = out[0]! ^ 0x80;
      return out;
    default:
      return out;
  }
}

const OFFSETS = (prng: Prng) => [
  0,
  prng.nextInt(EXPORT_BYTES),
  EXPORT_BYTES - 1 - prng.nextInt(4096),
  EXPORT_BYTES,
  EXPORT_BYTES + prng.nextInt(4096),
  2 ** 40,
  2 ** 53 - 1,
];
const LENGTHS = (prng: Prng) => [
  0,
  1,
  512,
  4096,
  1 + prng.nextInt(256 * 1024),
  MiB,
  EXPORT_BYTES,
  NBD_MAX_REQUEST_BYTES,
  NBD_MAX_REQUEST_BYTES + 1,
  0xffff_ffff,
];

function randomRequest(prng: Prng): NbdRequest {
  return {
    type: pick(prng, [
      NBD_CMD_READ,
      NBD_CMD_READ,
      NBD_CMD_WRITE,
      NBD_CMD_WRITE,
      NBD_CMD_FLUSH,
      NBD_CMD_TRIM,
      NBD_CMD_WRITE_ZEROES,
      NBD_CMD_DISC,
      NBD_CMD_BLOCK_STATUS,
      5,
      prng.nextInt(0x10000),
    ]),
    flags: pick(prng, [
      0,
      0,
      NBD_CMD_FLAG_FUA,
      NBD_CMD_FLAG_NO_HOLE,
      NBD_CMD_FLAG_DF,
      NBD_CMD_FLAG_REQ_ONE,
      prng.nextInt(0x10000),
    ]),
    handle: BigInt(prng.nextU32()) << 32n | BigInt(prng.nextU32()),
    offsetBytes: pick(prng, OFFSETS(prng)),
    lengthBytes: pick(prng, LENGTHS(prng)),
  };
}

/** One hostile connection's script, given a socket it may write to. */
async function hostile(prng: Prng, client: RawClient): Promise<void> {
  const scenario = prng.nextInt(6);
  if (scenario === 0) {
    // Noise from the first byte.
    await client.send(randomBytes(prng, prng.nextInt(2000)));
    return;
  }
  const flags = new Uint8Array(4);
  new DataView(flags.buffer).setUint32(
    0,
    prng.nextInt(8) === 0 ? prng.nextU32() : NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES,
  );
  await client.send(mutate(prng, flags));
  if (scenario === 1) {
    // Options, mostly mangled.
    for (let i = 0, n = 1 + prng.nextInt(6); i < n; i++) {
      const option = pick(prng, [
        NBD_OPT_LIST,
        NBD_OPT_INFO,
        NBD_OPT_GO,
        NBD_OPT_ABORT,
        NBD_OPT_STRUCTURED_REPLY,
        NBD_OPT_EXPORT_NAME,
        NBD_OPT_LIST_META_CONTEXT,
        NBD_OPT_SET_META_CONTEXT,
        prng.nextU32(),
      ]);
      const data = option === NBD_OPT_GO || option === NBD_OPT_INFO
        ? encodeInfoRequest({
          name: pick(prng, ["fuzz", "", "nope"]),
          infos: [NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE],
        })
        : option === NBD_OPT_LIST_META_CONTEXT || option === NBD_OPT_SET_META_CONTEXT
        ? encodeMetaContextRequest({
          exportName: pick(prng, ["fuzz", "", "nope"]),
          queries: pick(prng, [[], ["base:allocation"], ["base:", "x:y"], ["\u00ff".repeat(300)]]),
        })
        : randomBytes(prng, prng.nextInt(64));
      const message = encodeOption(option, data);
      if (prng.nextInt(4) === 0) {
        // A huge declared length.
        new DataView(message.buffer).setUint32(12, pick(prng, [0xffff_ffff, 65537, 1 << 20]));
      }
      await client.send(mutate(prng, message));
    }
    return;
  }
  // Enter transmission on the fuzz export, then send requests.
  if (prng.nextInt(2) === 0) {
    await client.send(encodeOption(NBD_OPT_STRUCTURED_REPLY));
    if (prng.nextInt(2) === 0) {
      // Select base:allocation, so that block status requests are served.
      await client.send(
        encodeOption(
          NBD_OPT_SET_META_CONTEXT,
          encodeMetaContextRequest({ exportName: "fuzz", queries: ["base:allocation"] }),
        ),
      );
    }
  }
  if (scenario === 2) {
    await client.send(encodeOption(NBD_OPT_EXPORT_NAME, new TextEncoder().encode("fuzz")));
  } else {
    await client.send(encodeOption(NBD_OPT_GO, encodeInfoRequest({ name: "fuzz", infos: [] })));
  }
  for (let i = 0, n = 1 + prng.nextInt(40); i < n; i++) {
    const request = randomRequest(prng);
    const header = prng.nextInt(8) === 0
      ? mutate(prng, encodeRequest(request))
      : encodeRequest(request);
    await client.send(header);
    if (request.type === NBD_CMD_WRITE) {
      const declared = request.lengthBytes;
      const sent = prng.nextInt(4) === 0
        ? prng.nextInt(Math.min(declared, MiB) + 1) // Truncated payload.
        : Math.min(declared, MiB);
      await client.send(randomBytes(prng, sent));
      if (sent < declared) return;
    }
    if (request.type === NBD_CMD_DISC && prng.nextInt(2) === 0) return;
  }
  if (prng.nextInt(3) === 0) await client.send(randomBytes(prng, prng.nextInt(100)));
}

/** Runs one hostile connection to its end, reading (or ignoring) what the server says. */
async function hostileConnection(prng: Prng, port: number): Promise<void> {
  const client = await RawClient.connect(port);
  // Half the clients read replies; the others leave the server's writes pending.
  const drain = prng.nextInt(2) === 0
    ? (async () => {
      const buffer = new Uint8Array(256 * 1024);
      try {
        while ((await client.socket.read(buffer)) !== null) {
          // Discard.
        }
      } catch {
        // Closed.
      }
    })()
    : Promise.resolve();
  const timer = setTimeout(() => client.close(), FUZZ_SCENARIO_TIMEOUT_MS);
  try {
    await hostile(prng, client);
    if (prng.nextInt(2) === 0) {
      await new Promise((resolve) => setTimeout(resolve, prng.nextInt(50)));
    }
  } catch {
    // The server hung up, or the timer did: both are expected.
  } finally {
    clearTimeout(timer);
    client.close();
    await drain;
  }
}

// ---------------------------------------------------------------------------
// The well-behaved client

/** Writes (FUA) random blocks to the "good" export, then checks reads against a shadow copy. */
async function goodClientRound(prng: Prng, port: number, shadow: Uint8Array): Promise<void> {
  const client = await RawClient.connect(port);
  try {
    await client.attach("good", { structured: prng.nextInt(2) === 0 });
    for (let i = 0; i < 4; i++) {
      const length = 1 + prng.nextInt(64 * 1024);
      const offset = prng.nextInt(EXPORT_BYTES - length);
      const data = randomBytes(prng, length);
      const reply = await client.call(
        { type: NBD_CMD_WRITE, flags: NBD_CMD_FLAG_FUA, offsetBytes: offset, lengthBytes: length },
        data,
      );
      assert.equal(reply.errno, 0, "good write failed");
      shadow.set(data, offset);
    }
    for (let i = 0; i < 4; i++) {
      const length = 1 + prng.nextInt(256 * 1024);
      const offset = prng.nextInt(EXPORT_BYTES - length);
      const reply = await client.call({
        type: NBD_CMD_READ,
        flags: 0,
        offsetBytes: offset,
        lengthBytes: length,
      });
      assert.equal(reply.errno, 0, "good read failed");
      assert.ok(equal(reply.data, shadow.subarray(offset, offset + length)), "good data differs");
    }
    await client.request({ type: NBD_CMD_DISC, flags: 0, offsetBytes: 0, lengthBytes: 0 });
  } finally {
    client.close();
  }
}

/** Reads the whole "good" export and compares it with the shadow copy. */
async function checkWholeExport(port: number, shadow: Uint8Array): Promise<void> {
  const client = await RawClient.connect(port);
  try {
    await client.attach("good");
    for (let offset = 0; offset < EXPORT_BYTES; offset += 4 * MiB) {
      const reply = await client.call({
        type: NBD_CMD_READ,
        flags: 0,
        offsetBytes: offset,
        lengthBytes: 4 * MiB,
      });
      assert.equal(reply.errno, 0);
      assert.ok(equal(reply.data, shadow.subarray(offset, offset + 4 * MiB)), `data at ${offset}`);
    }
  } finally {
    client.close();
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Waits until hostile clients' connections, exports and buffers are all released. */
async function settle(server: ServerProcess): Promise<ServerStats> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  for (;;) {
    const stats = await server.stats();
    const idle = stats.connections === 0 && stats.openExports === 0 &&
      stats.bufferedBytes === 0 && stats.requestsInFlight === 0;
    if (idle) return stats;
    if (Date.now() > deadline) {
      throw new Error(`the server still holds resources: ${JSON.stringify(stats)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

Deno.test("fuzz: hostile traffic never crashes, corrupts or leaks", async () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const server = await ServerProcess.start();
  const shadow = new Uint8Array(EXPORT_BYTES);
  let rounds = 0;
  let baselineRss = 0;
  let peakRss = 0;
  try {
    await runToolOk("nbdinfo", [`nbd://127.0.0.1:${server.port}/good`]);
    const started = Date.now();
    while (Date.now() - started < FUZZ_DURATION_MS && rounds < FUZZ_ROUNDS_MAX) {
      rounds++;
      await Promise.all(
        Array.from(
          { length: FUZZ_CONNECTIONS_PER_ROUND },
          () => hostileConnection(new Prng(prng.nextU32()), server.port),
        ),
      );
      assert.equal(server.exited, false, "the server exited");
      await goodClientRound(prng, server.port, shadow);
      const stats = await settle(server);
      peakRss = Math.max(peakRss, stats.rssBytes);
      if (rounds === WARMUP_ROUNDS) baselineRss = stats.rssBytes;
      assert.ok(stats.rssBytes < RSS_MAX_BYTES, `server RSS ${stats.rssBytes} bytes`);
    }
    await checkWholeExport(server.port, shadow);
    // A real client still gets a correct answer.
    const { stdout } = await runToolOk("nbdinfo", [
      "--json",
      `nbd://127.0.0.1:${server.port}/good`,
    ]);
    assert.equal(JSON.parse(stdout).exports[0]["export-size"], EXPORT_BYTES);
    const final = await settle(server);
    assert.ok(rounds > WARMUP_ROUNDS, `only ${rounds} rounds ran`);
    assert.ok(
      final.rssBytes - baselineRss < RSS_GROWTH_MAX_BYTES,
      `server RSS grew from ${baselineRss} to ${final.rssBytes} bytes over ${rounds} rounds`,
    );
    console.log(
      `fuzz: seed ${seed}, ${rounds} rounds of ${FUZZ_CONNECTIONS_PER_ROUND} connections, ` +
        `server RSS ${(baselineRss / MiB).toFixed(0)} → ${(final.rssBytes / MiB).toFixed(0)} MiB ` +
        `(peak ${(peakRss / MiB).toFixed(0)} MiB)`,
    );
  } catch (error) {
    console.error(`fuzz failed in round ${rounds}; replay with TORUS_SEED=${seed}`);
    throw error;
  } finally {
    const stderr = await server.stop().catch((error) => {
      console.error(`fuzz: TORUS_SEED=${seed}`);
      throw error;
    });
    if (stderr.includes("[error]") || Deno.env.get("NBD_SERVE_VERBOSE") === "1") {
      console.error(stderr);
    }
  }
});
