/**
 * Multi-process cluster tests (issue 4): a real etcd, three `torusd
 * --auto-join` storage nodes and `torusblk nbdserve` clients as real
 * processes, driven by the real NBD clients (nbdcopy, nbdsh, nbdinfo) and
 * torusctl. Nodes are killed with SIGKILL, etcd is restarted and, in the
 * network namespace scenario, a node's link is cut while I/O runs; what a
 * client acknowledged (flushed) must always read back intact through a
 * fresh client. Every test has a time limit and cleans up every process,
 * temporary directory and namespace (see `_cluster.ts`). A missing tool, or
 * namespaces without root, fail the test with what is needed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DATA_FILE_NAME } from "../../lib/storage/file_block_store.ts";
import { randomFile } from "../nbd/_tools.ts";
import { type TestCluster, withCluster } from "./_cluster.ts";
import {
  assertSameBytes,
  flipByte,
  holdClient,
  nbdsh,
  type NbdshProcess,
  readExport,
  runClient,
  runClientOk,
  sha256,
  spawnNbdsh,
  waitUntilOpens,
} from "./_torusd.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
/** The block size `torusctl init` formats clusters with. */
const BLOCK = 512 * KiB;

/** A cluster test: a bounded body against a fresh three-node cluster. */
function clusterTest(
  name: string,
  limitMs: number,
  body: (cluster: TestCluster) => Promise<void>,
  options: Parameters<typeof withCluster>[0] = {},
): void {
  Deno.test(name, async () => {
    await withCluster({ ...options, timeoutMs: limitMs }, body);
  });
}

/** Asserts that a command failed with exactly one line on stderr, `torusctl: ...`. */
function assertOneLineError(result: { code: number; stderr: string }, pattern: RegExp): void {
  assert.notEqual(result.code, 0, `expected a failure, got exit 0`);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line on stderr: ${result.stderr}`);
  assert.match(lines[0]!, /^torusctl: /);
  assert.match(lines[0]!, pattern);
}

/** The samples of `baseUrl`'s `/metrics`, by name with labels; fails unless it is healthy. */
async function metricsOf(baseUrl: string): Promise<Map<string, number>> {
  const health = await fetch(`${baseUrl}/healthz`);
  assert.equal(health.status, 200, await health.text());
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** Creates volume `name` of `sizeBytes`, fills it with random bytes through a client, flushed; returns their file. */
async function writeVolume(c: TestCluster, name: string, sizeBytes: number): Promise<string> {
  await c.torusctlOk("volume", "create-block", name, `${sizeBytes}`);
  const client = await c.startClient();
  const source = await randomFile(c.dir, `${name}.bin`, sizeBytes);
  await runClientOk("nbdcopy", ["--flush", source, client.uri(name)]);
  await c.stopClient(client);
  return source;
}

/** Asserts that the volume reads as `expected` through `uri`, by hashes first. */
async function assertVolume(
  cluster: TestCluster,
  uri: string,
  expected: Uint8Array<ArrayBuffer>,
  what: string,
): Promise<void> {
  const got = await readExport(cluster.dir, uri) as Uint8Array<ArrayBuffer>;
  if ((await sha256(got)) !== (await sha256(expected))) assertSameBytes(got, expected, what);
  assert.equal(got.length, expected.length, what);
}

/** Waits until `torusctl volume list` shows `name` with `status`. */
async function waitForStatus(cluster: TestCluster, name: string, status: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const volumes = JSON.parse(await cluster.torusctlOk("volume", "list", "-o", "json"));
    const volume = volumes.find((v: { name: string }) => v.name === name);
    if (volume?.status === status) return;
    assert.ok(
      Date.now() < deadline,
      `volume ${name} is ${volume?.status}, not ${status}, after 10 s`,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

clusterTest(
  "cluster: init, 3 nodes join, list-peers, ring get, bad input, a clean stop",
  60_000,
  async (c) => {
    const rows = await c.listPeers();
    assert.equal(rows.length, 3);
    for (const node of c.nodes) {
      const row = rows.find((r) => r.uuid === node.uuid);
      assert.ok(row, `node ${node.uuid} in list-peers: ${JSON.stringify(rows)}`);
      assert.equal(row.address, node.peerAddress);
      assert.equal(row.member, "OK");
      assert.equal(row.sizeBytes, 256 * MiB);
      assert.equal(row.usedBytes, 0);
      assert.equal(row.rebalancing, false);
    }
    const table = await c.torusctlOk("list-peers");
    assert.match(table, /^ADDRESS +UUID +SIZE +USED +MEMBER +UPDATED +REBALANCING$/m);
    assert.equal(table.match(/ 256 MiB .* OK /g)?.length, 3, table);
    // Three joins after init's version 1.
    assert.match(table, /Ring: version 4, replication 2$/m);

    const ring = await c.torusctlOk("ring", "get");
    assert.match(ring, /^Ring: Ketama$/m);
    assert.match(ring, /^Version: 4$/m);
    assert.match(ring, /^Replication: 2$/m);
    for (const node of c.nodes) assert.match(ring, new RegExp(`${node.uuid} \\(512 blocks\\)`));
    // A node's /metrics: the ring it uses, its store, its peer listener and rebalancer.
    const metrics = await metricsOf(c.nodes[0]!.httpUrl!);
    assert.equal(metrics.get("torus_ring_version"), 4);
    assert.equal(metrics.get("torus_ring_members"), 3);
    assert.equal(metrics.get("torus_ring_replication"), 2);
    assert.equal(metrics.get('torus_storage_blocks_total{storage="current"}'), 512);
    for (const name of ["torus_peer_connections", "torus_rebalance_active"]) {
      assert.ok(metrics.has(name), `${name} in a node's metrics`);
    }
    assert.equal(metrics.get("torus_distributor_block_write_failures"), 0);

    assertOneLineError(
      await c.torusctl("peer", "add", "tdp://127.0.0.1:1"),
      /tdp:\/\/127\.0\.0\.1:1/,
    );
    assertOneLineError(
      await c.torusctl("peer", "add", crypto.randomUUID()),
      /No live storage peer/,
    );
    assertOneLineError(await c.torusctl("ring", "set-replication", "x"), /"x"/);
    assertOneLineError(await c.torusctl("ring", "set-replication", "0"), /replication/i);
    assertOneLineError(await c.torusctl("peer", "remove", crypto.randomUUID()), /./);
    // Nothing changed.
    assert.match(await c.torusctlOk("ring", "get"), /^Version: 4$/m);

    // A node stopped with SIGTERM exits 0 and deregisters (its lease is revoked): DOWN at once.
    const status = await c.stopNode(2, "SIGTERM");
    assert.equal(status.code, 0, `torusd exited ${status.code} (signal ${status.signal})`);
    const down = (await c.listPeers()).find((row) => row.uuid === c.nodes[2]!.uuid);
    assert.equal(down?.member, "DOWN", JSON.stringify(down));
    assert.equal(down?.address, "");
    // It comes back with its uuid and address, still a member: the ring does not change.
    await c.startNode(2);
    await c.waitForMembers(3);
    assert.match(await c.torusctlOk("ring", "get"), /^Version: 4$/m);
  },
);

clusterTest(
  "cluster: 64 MiB written through one nbdserve read back through another",
  60_000,
  async (c) => {
    await c.torusctlOk("volume", "create-block", "v", "128MiB");
    const [a, b] = await Promise.all([c.startClient(), c.startClient()]);
    const source = await randomFile(c.dir, "source.bin", 64 * MiB);
    await runClientOk("nbdcopy", [source, a.uri("v")]);
    // nbdcopy's connections closed: client a synced and released the lock.
    await waitForStatus(c, "v", "free");
    const expected = new Uint8Array(128 * MiB);
    expected.set(await Deno.readFile(source));
    await assertVolume(c, b.uri("v"), expected, "read through the second client");
    // The clients' /metrics: what they served over NBD and placed on the ring.
    const written = await metricsOf(a.httpUrl);
    assert.equal(written.get('torus_nbd_request_bytes_total{command="write"}'), 64 * MiB);
    assert.equal(written.get("torus_ring_members"), 3);
    assert.ok(written.get("torus_server_peers_total")! >= 3, "the nodes and this client");
    // 128 blocks of data, and the INodes of its syncs, every write acknowledged.
    assert.ok(written.get("torus_distributor_block_writes_total")! >= 128);
    assert.equal(written.get("torus_distributor_block_write_failures"), 0);
    assert.ok(!written.has('torus_storage_blocks{storage="current"}'), "a client stores nothing");
    const read = await metricsOf(b.httpUrl);
    // nbdcopy reads the 64 MiB written and skips the holes block status reports.
    const readBytes = read.get('torus_nbd_request_bytes_total{command="read"}')!;
    assert.ok(readBytes >= 64 * MiB && readBytes < 128 * MiB, `${readBytes}`);
    assert.ok(read.get("torus_distributor_block_peer_blocks")! >= 128, "read from the nodes");
    assert.equal(read.get("torus_distributor_block_request_failures"), 0);
    // Grown in etcd while the clients run: a new connection sees the new size, data intact.
    assert.match(await c.torusctlOk("volume", "resize", "v", "192MiB"), /to 192 MiB/);
    const info = JSON.parse((await runClientOk("nbdinfo", ["--json", b.uri("v")])).stdout);
    assert.equal(info.exports[0]["export-size"], 192 * MiB);
    const grown = new Uint8Array(192 * MiB);
    grown.set(expected);
    await assertVolume(c, a.uri("v"), grown, "read after the resize");
    // Two copies of every block: about 2 x 64 MiB across the nodes, as their heartbeats report.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const used = (await c.listPeers()).map((row) => row.usedBytes! / MiB);
      const total = used.reduce((sum, mib) => sum + mib, 0);
      if (total >= 128) {
        assert.ok(total < 140, `used ${used.join(", ")} MiB`);
        assert.ok(used.every((mib) => mib > 16), `used ${used.join(", ")} MiB: unbalanced`);
        break;
      }
      assert.ok(Date.now() < deadline, `used ${used.join(", ")} MiB after 15 s`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    await c.stopClient(a);
    await c.stopClient(b);
  },
);

clusterTest(
  "cluster: a byte flipped in a node's stored block is found by its scrubber and rewritten from a peer",
  90_000,
  async (c) => {
    const source = await writeVolume(c, "v", 32 * MiB);
    // 64 blocks of data, two copies over three nodes: slot 5 of node 1 holds one of them.
    await c.stopNode(1);
    await flipByte(join(c.nodes[1]!.dataDir, "block", DATA_FILE_NAME), 5 * BLOCK + 12_345, 0x81);
    await c.startNode(1);
    /** Node 1's /metrics once its scrubber has finished a pass. */
    const afterPass = async () => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const metrics = await metricsOf(c.nodes[1]!.httpUrl!);
        if (metrics.get("torus_scrub_passes_total")! >= 1) return metrics;
        assert.ok(Date.now() < deadline, "no scrub pass within 30 s");
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    };
    let metrics = await afterPass();
    assert.equal(metrics.get("torus_scrub_corrupt_blocks_total"), 1);
    assert.equal(metrics.get("torus_scrub_repaired_blocks_total"), 1);
    assert.match(
      c.nodes[1]!.process!.log.join("\n"),
      /scrub: block \d+ of INode \d+ of volume id 1 is corrupt; rewrote it from the copy of /,
    );
    // The rewritten copy is good: after a clean restart, node 1's next pass finds nothing.
    await c.stopNode(1);
    await c.startNode(1);
    metrics = await afterPass();
    assert.equal(metrics.get("torus_scrub_corrupt_blocks_total"), 0);
    assert.ok(metrics.get("torus_scrub_checked_blocks_total")! >= 32, "node 1 holds its share");
    const reader = await c.startClient();
    await assertVolume(c, reader.uri("v"), await Deno.readFile(source), "after the repair");
    await c.stopClient(reader);
  },
  { nodeArgs: ["--scrub-rate", "256MiB"] },
);

clusterTest(
  "cluster: a node killed for good is evicted from the ring and its blocks copied back to two copies",
  150_000,
  async (c) => {
    const source = await writeVolume(c, "v", 32 * MiB);
    const gone = c.nodes[2]!.uuid;
    await c.killNode(2);
    // Its lease runs out (30 s), then a node's next heartbeat sees it down for the delay (1 s).
    const deadline = Date.now() + 90_000;
    let ring = await c.torusctlOk("ring", "get");
    while (ring.includes(gone)) {
      assert.ok(Date.now() < deadline, `node ${gone} still in the ring after 90 s:\n${ring}`);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      ring = await c.torusctlOk("ring", "get");
    }
    assert.match(ring, /^Version: 5$/m, "one change: the eviction");
    const evictions = await Promise.all(
      [0, 1].map(async (index) =>
        (await metricsOf(c.nodes[index]!.httpUrl!)).get("torus_server_evictions_total")!
      ),
    );
    assert.equal(evictions[0]! + evictions[1]!, 1, "exactly one node evicted it");
    // The two left hold two copies of every block: about 2 x 32 MiB between them.
    for (;;) {
      const used = (await c.listPeers()).filter((row) => row.member === "OK")
        .map((row) => row.usedBytes! / MiB);
      if (used.length === 2 && used.every((mib) => mib >= 32)) break;
      assert.ok(Date.now() < deadline, `used ${used.join(", ")} MiB: not back to two copies`);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    const reader = await c.startClient();
    await assertVolume(c, reader.uri("v"), await Deno.readFile(source), "after the eviction");
    await c.stopClient(reader);
  },
  { nodeArgs: ["--auto-evict-after", "1"] },
);

/** libnbd prints the server's error message (why an open was refused) only in debug mode. */
const DEBUG = { env: { LIBNBD_DEBUG: "1" } };
/** What the server says when another client holds the volume. */
const IN_USE = /server error message: Cannot lock volume "v": it is in use by [0-9a-f-]{36}$/m;

clusterTest(
  "cluster: a volume open through one client is in use for another",
  60_000,
  async (c) => {
    await c.torusctlOk("volume", "create-block", "v", "16MiB");
    const [a, b] = await Promise.all([c.startClient(), c.startClient()]);
    const held = await holdClient(
      a.uri("v"),
      `h.pwrite(b"first!" * 1000, 4096)\nh.flush()`,
      `h.pwrite(b"second" * 1000, 4096)\nh.flush()\nh.shutdown()`,
    );
    let released = false;
    try {
      const refused = await runClient("nbdinfo", ["--size", b.uri("v")], DEBUG);
      assert.notEqual(refused.code, 0, `nbdinfo through b succeeded: ${refused.stdout}`);
      assert.match(refused.stderr, IN_USE);
      // Client a itself serves a second connection (its volume is open, shared).
      assert.equal(
        (await runClientOk("nbdinfo", ["--size", a.uri("v")])).stdout.trim(),
        "16777216",
      );
      await waitForStatus(c, "v", "in-use");
      const result = await held.release();
      released = true;
      assert.equal(result.code, 0, result.stderr);
    } finally {
      if (!released) await held.release();
    }
    // The last connection closed: the lock is released and b opens the volume.
    await waitUntilOpens(b.uri("v"), 10_000);
    assert.equal(
      (await nbdsh(b.uri("v"), `print(h.pread(6000, 4096) == b"second" * 1000)`)).trim(),
      "True",
    );
    // Now b holds it, and a is refused.
    const heldByB = await holdClient(b.uri("v"), "h.pread(512, 0)", "h.shutdown()");
    try {
      const refused = await runClient("nbdinfo", ["--size", a.uri("v")], DEBUG);
      assert.notEqual(refused.code, 0, "nbdinfo through a succeeded while b holds v");
      assert.match(refused.stderr, IN_USE);
    } finally {
      await heldByB.release();
    }
  },
);

/**
 * Python for nbdsh: a random sequence of unaligned, overlapping writes,
 * zeroes and trims of the whole export, and bursts of concurrent writes
 * (disjoint unaligned pieces of a few blocks, in flight together), with a
 * FLUSH every `flushEvery` operations, checked against a local model; the
 * model is saved to `model`.
 */
function rewriteScript(model: string, seed: number, operations: number, flushEvery: number) {
  return `
import random
B = ${BLOCK}
size = h.get_size()
rng = random.Random(${seed})
expected = bytearray(size)
flushes = 0
for i in range(${operations}):
    kind = rng.random()
    length = rng.choice([1, 7, 511, 513, 4096, 4097, 65537, B - 3, B + 5, 3 * B + 1])
    length = min(length, size)
    offset = rng.randrange(0, size - length + 1)
    if kind < 0.6:
        data = rng.randbytes(length)
        h.pwrite(data, offset)
        expected[offset:offset + length] = data
    elif kind < 0.8:
        start = rng.randrange(0, size - 3 * B)
        cuts = sorted(set(rng.randrange(1, 3 * B) for _ in range(rng.randrange(2, 12))))
        bounds = [0] + cuts + [3 * B]
        cookies = []
        for a, b in zip(bounds, bounds[1:]):
            data = rng.randbytes(b - a)
            cookies.append(h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), start + a))
            expected[start + a:start + b] = data
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for cookie in cookies:
            assert h.aio_command_completed(cookie)
    elif kind < 0.9:
        h.zero(length, offset)
        expected[offset:offset + length] = bytes(length)
    else:
        h.trim(length, offset)
        expected[offset:offset + length] = bytes(length)
    if i % 17 == 0:
        at = rng.randrange(0, size - 3 * B)
        got = h.pread(3 * B, at)
        assert got == bytes(expected[at:at + 3 * B]), "read-back after op %d at %d" % (i, at)
    if (i + 1) % ${flushEvery} == 0:
        h.flush()
        flushes += 1
h.flush()
assert h.pread(size, 0) == bytes(expected), "whole volume after the last flush"
open(${JSON.stringify(model)}, "wb").write(expected)
h.shutdown()
print("flushes", flushes + 1)
`;
}

clusterTest(
  "cluster: unaligned overlapping rewrites across FLUSHes match a model",
  60_000,
  async (c) => {
    await c.torusctlOk("volume", "create-block", "v", "8MiB");
    const [a, b] = await Promise.all([c.startClient(), c.startClient()]);
    const model = join(c.dir, "model.bin");
    const out = await nbdsh(a.uri("v"), rewriteScript(model, 4, 600, 60), { timeoutMs: 45_000 });
    assert.match(out, /^flushes 11$/m);
    await waitForStatus(c, "v", "free");
    await assertVolume(
      c,
      b.uri("v"),
      await Deno.readFile(model),
      "the volume through another client",
    );
  },
);

/**
 * Python for nbdsh: until its stdin ends, random unaligned writes over the
 * export with a read-back check after every few and a FLUSH every
 * `flushEvery`, against a local model. It prints `FLUSHED n` after each
 * successful flush and `WRITE-ERROR`, `READ-ERROR` or `FLUSH-ERROR` lines
 * for failed requests (a failed write leaves its range unknown: the mask
 * marks it); a read that returns wrong bytes fails the script. At the end a
 * last FLUSH must succeed; then the model and the mask are saved.
 */
function ioLoopScript(model: string, mask: string, seed: number, flushEvery: number) {
  return `
import random, sys, threading, time
B = ${BLOCK}
size = h.get_size()
rng = random.Random(${seed})
expected = bytearray(size)
unknown = bytearray(size)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
def log(*args):
    print(*args, flush=True)
ops = flushes = 0
while not stop.is_set():
    length = rng.choice([1, 4096, 5000, B - 1, B, B + 3, 2 * B + 7])
    offset = rng.randrange(0, size - length + 1)
    data = rng.randbytes(length)
    try:
        h.pwrite(data, offset)
        expected[offset:offset + length] = data
        unknown[offset:offset + length] = bytes(length)
    except nbd.Error as e:
        unknown[offset:offset + length] = b"\\x01" * length
        log("WRITE-ERROR", ops, time.time(), e)
    ops += 1
    if ops % 3 == 0:
        n = rng.choice([512, 70000, B, 2 * B])
        at = rng.randrange(0, size - n + 1)
        try:
            got = h.pread(n, at)
        except nbd.Error as e:
            log("READ-ERROR", ops, time.time(), e)
        else:
            clean = unknown.find(1, at, at + n) == -1
            if not clean or got != expected[at:at + n]:
                for i in range(n):
                    if not unknown[at + i] and got[i] != expected[at + i]:
                        raise AssertionError("read after op %d: byte %d is %d, expected %d" % (ops, at + i, got[i], expected[at + i]))
    if ops % ${flushEvery} == 0:
        try:
            h.flush()
            flushes += 1
            log("FLUSHED", flushes, ops, time.time())
        except nbd.Error as e:
            log("FLUSH-ERROR", ops, time.time(), e)
h.flush()
open(${JSON.stringify(model)}, "wb").write(expected)
open(${JSON.stringify(mask)}, "wb").write(unknown)
h.shutdown()
log("DONE", ops, flushes + 1)
`;
}

/** Waits until the script has flushed `count` more times than when called. */
async function moreFlushes(io: NbdshProcess, count: number, timeoutMs: number): Promise<void> {
  const flushed = () => io.stdout.filter((line) => line.startsWith("FLUSHED ")).length;
  const target = flushed() + count;
  const deadline = Date.now() + timeoutMs;
  while (flushed() < target) {
    if (Date.now() > deadline) {
      const result = await io.release();
      throw new Error(
        `the writer flushed ${flushed()} of ${target} times within ${timeoutMs} ms:\n` +
          `${result.stdout}\n${result.stderr}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** What {@linkcode ioDuring} leaves: the model of the volume and the script's report. */
interface IoOutcome {
  /** The bytes every acknowledged write left (zeros where never written). */
  expected: Uint8Array<ArrayBuffer>;
  /** 1 where a failed write left the bytes unknown. */
  unknown: Uint8Array;
  /** Lines the script printed. */
  lines: string[];
  /** `WRITE-ERROR`, `READ-ERROR` and `FLUSH-ERROR` lines. */
  errors: string[];
}

/**
 * Runs {@linkcode ioLoopScript} on `volume` through `client` until it has
 * flushed a few times, runs `disrupt` while it keeps going, lets it run for
 * `flushesAfter` more successful flushes, and stops it; the script must end
 * well (a last FLUSH succeeded, every read matched the model).
 */
async function ioDuring(
  cluster: TestCluster,
  uri: string,
  disrupt: (io: NbdshProcess) => Promise<void>,
  options: { seed: number; flushesAfter: number; timeoutMs: number },
): Promise<IoOutcome> {
  const model = join(cluster.dir, `model-${options.seed}.bin`);
  const mask = join(cluster.dir, `mask-${options.seed}.bin`);
  const io = await spawnNbdsh(uri, ioLoopScript(model, mask, options.seed, 10));
  let released = false;
  try {
    await moreFlushes(io, 3, 20_000);
    await disrupt(io);
    await moreFlushes(io, options.flushesAfter, options.timeoutMs);
    const result = await io.release(30_000);
    released = true;
    assert.equal(result.code, 0, `the writer failed:\n${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /^DONE \d+ \d+$/m);
    const lines = result.stdout.split("\n");
    return {
      expected: await Deno.readFile(model),
      unknown: await Deno.readFile(mask),
      lines,
      errors: lines.filter((line) => /^(WRITE|READ|FLUSH)-ERROR /.test(line)),
    };
  } finally {
    if (!released) await io.release(5_000);
  }
}

/** Asserts that `uri` reads as the model wherever the model knows the bytes. */
async function assertMatchesModel(
  cluster: TestCluster,
  uri: string,
  outcome: IoOutcome,
  what: string,
): Promise<void> {
  if (!outcome.unknown.includes(1)) {
    await assertVolume(cluster, uri, outcome.expected, what);
    return;
  }
  const got = await readExport(cluster.dir, uri);
  assert.equal(got.length, outcome.expected.length, what);
  for (let i = 0; i < got.length; i++) {
    if (outcome.unknown[i] === 0 && got[i] !== outcome.expected[i]) {
      assert.fail(`${what}: byte ${i} is ${got[i]}, expected ${outcome.expected[i]}`);
    }
  }
}

clusterTest(
  "cluster: kill -9 of a node while reading and writing loses nothing",
  90_000,
  async (c) => {
    await c.torusctlOk("volume", "create-block", "v", "32MiB");
    const a = await c.startClient();
    const outcome = await ioDuring(c, a.uri("v"), () => c.killNode(1), {
      seed: 5,
      flushesAfter: 6,
      timeoutMs: 30_000,
    });
    // Reads fail over to the other replica, writes hand off, flushes copy what the dead node held.
    assert.deepEqual(outcome.errors, [], "no request failed");
    await c.stopClient(a);
    const b = await c.startClient();
    await assertMatchesModel(c, b.uri("v"), outcome, "through a fresh client, node 1 down");
    await c.stopClient(b);
    // Node 1 comes back with stale copies of blocks rewritten while it was down: never read.
    const restarted = Date.now();
    await c.startNode(1);
    const rows = await c.waitForMembers(3);
    const row = rows.find((row) => row.uuid === c.nodes[1]!.uuid);
    assert.ok(
      row && row.lastSeenMs >= restarted,
      `node 1 registered again: ${JSON.stringify(rows)}`,
    );
    const d = await c.startClient();
    await assertMatchesModel(c, d.uri("v"), outcome, "through a fresh client, node 1 back");
  },
);

clusterTest(
  "cluster: etcd restarted (and killed) during writes; the client recovers, nothing lost",
  90_000,
  async (c) => {
    await c.torusctlOk("volume", "create-block", "v", "32MiB");
    const [a, b] = await Promise.all([c.startClient(), c.startClient()]);
    let restarted = 0;
    const outcome = await ioDuring(c, a.uri("v"), async (io) => {
      await c.etcd.restart();
      await moreFlushes(io, 2, 30_000);
      // A crash and a longer outage: writes and FLUSHes wait for etcd to come back.
      await c.etcd.kill();
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      await c.etcd.restart();
      restarted = Date.now();
      // The writer kept its lock: its lease outlived the outage.
      const refused = await runClient("nbdinfo", ["--size", b.uri("v")], DEBUG);
      assert.notEqual(refused.code, 0, "v opened through b while a writes it");
      assert.match(refused.stderr, IN_USE);
    }, { seed: 6, flushesAfter: 6, timeoutMs: 40_000 });
    // The metadata calls of a write and a FLUSH retry through a short outage.
    assert.deepEqual(outcome.errors, [], "no request failed");
    await c.stopClient(a);
    await assertMatchesModel(c, b.uri("v"), outcome, "through another client");
    // The nodes' heartbeats reach the restarted etcd.
    await c.waitForMembers(3, { seenSinceMs: restarted });
  },
);

clusterTest(
  "cluster in network namespaces: a node's link cut during I/O is a node failure",
  90_000,
  async (c) => {
    await c.torusctlOk("volume", "create-block", "v", "32MiB");
    const a = await c.startClient();
    const outcome = await ioDuring(c, a.uri("v"), () => c.cutLink(1), {
      seed: 7,
      flushesAfter: 6,
      timeoutMs: 60_000,
    });
    // Requests to the silent node time out and go to the other replicas.
    assert.deepEqual(outcome.errors, [], "no request failed");
    await c.stopClient(a);
    const b = await c.startClient();
    await assertMatchesModel(c, b.uri("v"), outcome, "through a fresh client, node 1 cut off");
    await c.stopClient(b);
    // The link comes back: node 1 holds stale copies of blocks rewritten meanwhile, never read.
    const restored = Date.now();
    await c.restoreLink(1);
    await c.waitForMembers(3, { seenSinceMs: restored });
    const d = await c.startClient();
    await assertMatchesModel(c, d.uri("v"), outcome, "through a fresh client, node 1 back");

    // A FLUSH right after a cut, with nothing else in flight: the silent node is found out by a
    // PING within seconds (not at the end of the flush's own deadline) and its blocks are copied.
    const image = await randomFile(c.dir, "image.bin", 8 * MiB);
    const writer = await spawnNbdsh(
      d.uri("v"),
      `import sys, time
h.pwrite(open(${JSON.stringify(image)}, "rb").read(), 4 * ${MiB})
print("WRITTEN", flush=True)
sys.stdin.read()
start = time.monotonic()
h.flush()
print("FLUSH %.1f" % (time.monotonic() - start), flush=True)
h.shutdown()
`,
    );
    await writer.waitFor(/^WRITTEN$/);
    await c.cutLink(2);
    const flushed = await writer.release(30_000);
    assert.equal(flushed.code, 0, `the flush failed:\n${flushed.stdout}\n${flushed.stderr}`);
    const seconds = Number(/^FLUSH ([\d.]+)$/m.exec(flushed.stdout)?.[1]);
    // About 4 s: 2 s of silence, then 2 s for the PING (it took 14 s when only the keepalive found out).
    assert.ok(seconds < 10, `the FLUSH took ${seconds} s`);
    await c.stopClient(d);
    const expected = new Uint8Array(outcome.expected);
    expected.set(await Deno.readFile(image), 4 * MiB);
    const e = await c.startClient();
    await assertVolume(c, e.uri("v"), expected, "through a fresh client, node 2 cut off");
  },
  { netns: true },
);
