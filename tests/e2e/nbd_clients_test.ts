/**
 * The NBD front end against real clients (nbdinfo, nbdcopy, qemu-img, fio,
 * nbdsh), with torusd as a real process on the file engine (`crc,base`).
 * Every test starts its own torusd on free ports and stops it with SIGTERM,
 * which must exit 0. A missing client fails the test, naming the packages.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { LEASE_TTL_MS_DEFAULT } from "../../lib/constants.ts";
import { randomFile } from "../nbd/_tools.ts";
import { run } from "./_cli.ts";
import {
  assertSameBytes,
  createVolume,
  holdClient,
  nbdsh,
  readExport,
  runClient,
  runClientOk,
  sha256,
  startTorusd,
  stopTorusd,
  torusctlOk,
  type TorusdProcess,
  waitUntilOpens,
} from "./_torusd.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
/** The block size torusd --auto-init formats with. */
const BLOCK = 512 * KiB;

/** One test's world: a temporary directory and a torusd serving its data dir. */
interface World {
  dir: string;
  dataDir: string;
  daemon: TorusdProcess;
}

/**
 * Runs `body` against a fresh torusd; afterwards stops it with SIGTERM and,
 * unless the body failed, asserts that it exited 0.
 */
async function withTorusd(body: (world: World) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "torus-nbd-clients-" });
  try {
    const dataDir = join(dir, "data");
    const world = { dir, dataDir, daemon: await startTorusd(dataDir, ["--auto-init"]) };
    let failed = false;
    try {
      await body(world);
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      const status = await stopTorusd(world.daemon, "SIGTERM");
      if (!failed) {
        assert.equal(
          status.code,
          0,
          `torusd exited ${status.code} (signal ${status.signal}) after SIGTERM:\n` +
            world.daemon.log.join("\n"),
        );
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Restarts torusd on the same data dir after stopping it with `signal`. */
async function restart(world: World, signal: Deno.Signal): Promise<Deno.CommandStatus> {
  const status = await stopTorusd(world.daemon, signal);
  world.daemon = await startTorusd(world.dataDir);
  return status;
}

/**
 * Ranges written by the persistence tests: aligned and not, within a
 * sector, across block boundaries, whole blocks, the last bytes.
 */
function pieces(sizeBytes: number): [number, number][] {
  return [
    [0, 4096],
    [3 * 4096 + 17, 100_000],
    [BLOCK - 1000, 3000],
    [3 * BLOCK, 2 * BLOCK],
    [6 * BLOCK + 512, 7],
    [9 * BLOCK - 4096, BLOCK + 8192],
    [sizeBytes - 5000, 5000],
  ];
}

/** Python that writes `pieces` of the image file at their offsets. */
function writePieces(image: string, ranges: [number, number][]): string {
  return `
import json
image = open(${JSON.stringify(image)}, "rb").read()
for offset, length in json.loads(${JSON.stringify(JSON.stringify(ranges))}):
    h.pwrite(image[offset:offset + length], offset)
`;
}

/** The volume's expected bytes: the image where `pieces` wrote, zeros elsewhere. */
function expectedAfter(image: Uint8Array, ranges: [number, number][]): Uint8Array {
  const expected = new Uint8Array(image.length);
  for (const [offset, length] of ranges) {
    expected.set(image.subarray(offset, offset + length), offset);
  }
  return expected;
}

Deno.test("nbdinfo: volume flags, read-only snapshot, --list, the default export", async () => {
  await withTorusd(async ({ dataDir, daemon }) => {
    const none = await runClient("nbdinfo", ["--json", daemon.uri()]);
    assert.notEqual(none.code, 0, "no volume: no default export");

    await createVolume(dataDir, "vol1", "64MiB");
    const info = JSON.parse((await runClientOk("nbdinfo", ["--json", daemon.uri("vol1")])).stdout);
    const vol1 = info.exports[0];
    assert.equal(vol1["export-name"], "vol1");
    assert.equal(vol1["export-size"], 64 * MiB);
    assert.equal(vol1.is_read_only, false);
    for (const flag of ["can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"]) {
      assert.equal(vol1[flag], true, flag);
    }

    // Exactly one volume: the empty export name is that volume.
    const byDefault = JSON.parse((await runClientOk("nbdinfo", ["--json", daemon.uri()])).stdout);
    assert.equal(byDefault.exports[0]["export-size"], 64 * MiB);

    await torusctlOk(dataDir, "block", "snapshot", "create", "vol1@s");
    const snap = JSON.parse(
      (await runClientOk("nbdinfo", ["--json", daemon.uri("vol1@s")])).stdout,
    ).exports[0];
    assert.equal(snap["export-size"], 64 * MiB);
    assert.equal(snap.is_read_only, true);
    assert.equal(snap.can_trim, false);
    assert.equal(snap.can_zero, false);
    // A snapshot is not a second volume: the default export still works.
    await runClientOk("nbdinfo", ["--size", daemon.uri()]);

    await createVolume(dataDir, "vol2", "32MiB");
    const listed = JSON.parse(
      (await runClientOk("nbdinfo", ["--list", "--json", daemon.uri()])).stdout,
    );
    const names = listed.exports.map((e: Record<string, unknown>) => e["export-name"]).sort();
    assert.deepEqual(names, ["vol1", "vol2"]);
    const sizes = Object.fromEntries(
      listed.exports.map((e: Record<string, unknown>) => [e["export-name"], e["export-size"]]),
    );
    assert.deepEqual(sizes, { vol1: 64 * MiB, vol2: 32 * MiB });
    const plain = await runClientOk("nbdinfo", ["--list", daemon.uri()]);
    assert.match(plain.stdout, /export="vol1"/);
    assert.match(plain.stdout, /export="vol2"/);

    // Two volumes: no default export.
    const two = await runClient("nbdinfo", ["--json", daemon.uri()]);
    assert.notEqual(two.code, 0, "two volumes: no default export");
  });
});

Deno.test("nbdcopy: 256 MiB in and out byte-identical; qemu-img compare says identical", async () => {
  await withTorusd(async ({ dir, dataDir, daemon }) => {
    const size = 256 * MiB;
    await createVolume(dataDir, "vol", "256MiB");
    const source = await randomFile(dir, "source.bin", size);
    const uri = daemon.uri("vol");
    await runClientOk("nbdcopy", [source, uri]);
    const out = join(dir, "out.bin");
    await runClientOk("nbdcopy", [uri, out]);
    const [expected, got] = [await Deno.readFile(source), await Deno.readFile(out)];
    if ((await sha256(got)) !== (await sha256(expected))) {
      assertSameBytes(got, expected, "nbdcopy out");
    }
    assert.equal(got.length, size);
    const compared = await runClient("qemu-img", [
      "compare",
      "-f",
      "raw",
      "-F",
      "raw",
      source,
      uri,
    ]);
    assert.equal(compared.code, 0, `qemu-img compare: ${compared.stdout}${compared.stderr}`);
    assert.match(compared.stdout, /Images are identical/);
  });
});

interface FioJob {
  error: number;
  read: { io_bytes: number };
  write: { io_bytes: number };
}

/** Bytes each fio job covers. */
const FIO_SIZE_BYTES = 128 * MiB;

for (const [rw, blockSize] of [["randwrite", "4k"], ["write", "1M"]] as const) {
  Deno.test(`fio ioengine=nbd ${rw} bs=${blockSize} iodepth=32 verifies with crc32c`, async () => {
    await withTorusd(async ({ dir, dataDir, daemon }) => {
      await createVolume(dataDir, "vol", "128MiB");
      // fio writes *-verify.state files into its working directory.
      const cwd = join(dir, "fio");
      await Deno.mkdir(cwd);
      const { stdout } = await runClientOk("fio", [
        `--name=${rw}-${blockSize}`,
        "--ioengine=nbd",
        `--uri=${daemon.uri("vol")}`,
        `--rw=${rw}`,
        `--bs=${blockSize}`,
        "--iodepth=32",
        `--size=${FIO_SIZE_BYTES}`,
        "--verify=crc32c",
        "--verify_fatal=1",
        "--do_verify=1",
        "--output-format=json",
      ], { cwd, timeoutMs: 60_000 });
      // The nbd engine prints "fio: connected to NBD server" before the JSON.
      const job: FioJob = JSON.parse(stdout.slice(stdout.indexOf("{"))).jobs[0];
      assert.equal(job.error, 0);
      assert.equal(job.write.io_bytes, FIO_SIZE_BYTES);
      // The verify phase read every block back.
      assert.equal(job.read.io_bytes, FIO_SIZE_BYTES);
    });
  });
}

Deno.test("nbdsh: TRIM and WRITE_ZEROES read back as zeros, aligned and unaligned", async () => {
  await withTorusd(async ({ dataDir, daemon }) => {
    await createVolume(dataDir, "vol", "8MiB");
    const script = `
import os
B = ${BLOCK}
assert h.can_trim() and h.can_zero()
expected = bytearray(os.urandom(12 * B))

def check(what):
    got = h.pread(len(expected), 0)
    if got != bytes(expected):
        first = next(i for i in range(len(got)) if got[i] != expected[i])
        raise AssertionError("%s: byte %d is %d, expected %d" % (what, first, got[first], expected[first]))

def trim(length, offset):
    h.trim(length, offset)
    expected[offset:offset + length] = bytes(length)

def zero(length, offset, flags=0):
    h.zero(length, offset, flags)
    expected[offset:offset + length] = bytes(length)

def ranges(base, op):
    op(B, base)                     # a whole block
    op(8192, base + B + 4096)       # aligned sectors inside a block
    op(1000, base + B + 100)        # inside one sector
    op(300001, base + 2 * B - 150000)  # unaligned, across a block boundary
    op(2 * B + 4096, base + 3 * B - 4096)  # several blocks, sector-aligned ends

# In the write session: blocks change in place.
h.pwrite(bytes(expected), 0)
ranges(0, trim)
ranges(6 * B, zero)
check("trim/zero in session")

# After FLUSH the blocks are committed: partial zeroing copies on write.
h.flush()
expected[:] = os.urandom(12 * B)
h.pwrite(bytes(expected), 0)
h.flush()
ranges(0, lambda n, o: zero(n, o, nbd.CMD_FLAG_NO_HOLE))
ranges(6 * B, lambda n, o: trim(n, o))
zero(5000, 11 * B + 3, nbd.CMD_FLAG_FUA)
check("trim/zero of committed blocks")

# Ranges never written read as zeros, and zeroing them changes nothing.
trim(B, 14 * B)
zero(3 * B + 1, 12 * B)
assert h.pread(4 * B, 12 * B) == bytes(4 * B)
h.flush()

# Another connection (same shared file) sees the same bytes.
other = nbd.NBD()
other.connect_uri(${JSON.stringify(daemon.uri("vol"))})
assert other.pread(len(expected), 0) == bytes(expected), "second connection"
other.shutdown()
h.shutdown()
print("ok")
`;
    assert.equal((await nbdsh(daemon.uri("vol"), script)).trim(), "ok");
  });
});

Deno.test("nbdsh: out-of-range requests fail with EINVAL (ENOSPC for writes)", async () => {
  await withTorusd(async ({ dataDir, daemon }) => {
    await createVolume(dataDir, "vol", "4MiB");
    const script = `
h.set_strict_mode(0)
size = h.get_size()
assert size == ${4 * MiB}
for count, offset in [(10, size), (1, size), (2, size - 1), (${
      BLOCK + 1
    }, size - ${BLOCK}), (512, 1 << 60)]:
    try:
        h.pread(count, offset)
        assert False, "out-of-range pread succeeded: %d at %d" % (count, offset)
    except nbd.Error as e:
        assert e.errno == "EINVAL", e
try:
    h.trim(2, size - 1)
    assert False, "out-of-range trim succeeded"
except nbd.Error as e:
    assert e.errno == "EINVAL", e
# Writes (WRITE and WRITE_ZEROES) past the end: ENOSPC, as the NBD spec says.
for name, action in [("pwrite", lambda: h.pwrite(b"xy", size - 1)), ("zero", lambda: h.zero(2, size - 1))]:
    try:
        action()
        assert False, "out-of-range %s succeeded" % name
    except nbd.Error as e:
        assert e.errno == "ENOSPC", e
# The connection is still good.
h.pwrite(b"ok", size - 2)
assert h.pread(2, size - 2) == b"ok"
h.shutdown()
print("ok")
`;
    assert.equal((await nbdsh(daemon.uri("vol"), script)).trim(), "ok");
  });
});

Deno.test("nbdsh: writes to VOLUME@SNAPSHOT fail with EPERM; the snapshot keeps its bytes", async () => {
  await withTorusd(async ({ dataDir, daemon }) => {
    await createVolume(dataDir, "vol1", "4MiB");
    await nbdsh(
      daemon.uri("vol1"),
      `h.pwrite(b"snapshot" * 512, 8192)\nh.flush()\nh.shutdown()`,
    );
    await torusctlOk(dataDir, "block", "snapshot", "create", "vol1@s");
    const script = `
assert h.is_read_only()
h.set_strict_mode(0)
for name, action in [
    ("pwrite", lambda: h.pwrite(b"x" * 4096, 8192)),
    ("pwrite FUA", lambda: h.pwrite(b"x", 0, nbd.CMD_FLAG_FUA)),
    ("trim", lambda: h.trim(4096, 8192)),
    ("zero", lambda: h.zero(4096, 8192)),
]:
    try:
        action()
        assert False, "%s to a snapshot succeeded" % name
    except nbd.Error as e:
        assert e.errno == "EPERM", e
assert h.pread(4096, 8192) == b"snapshot" * 512
h.flush()
h.shutdown()
print("ok")
`;
    assert.equal((await nbdsh(daemon.uri("vol1@s"), script)).trim(), "ok");
    // The volume moves on; its snapshot does not.
    await nbdsh(daemon.uri("vol1"), `h.pwrite(b"current!" * 512, 8192)\nh.flush()\nh.shutdown()`);
    await nbdsh(
      daemon.uri("vol1@s"),
      `assert h.pread(4096, 8192) == b"snapshot" * 512\nh.shutdown()`,
    );
    await nbdsh(
      daemon.uri("vol1"),
      `assert h.pread(4096, 8192) == b"current!" * 512\nh.shutdown()`,
    );
  });
});

Deno.test('torusctl snapshot restore fails "in use" while torusd serves the volume', async () => {
  await withTorusd(async ({ dataDir, daemon }) => {
    await createVolume(dataDir, "vol1", "4MiB");
    await nbdsh(daemon.uri("vol1"), `h.pwrite(b"before" * 100, 0)\nh.flush()\nh.shutdown()`);
    await torusctlOk(dataDir, "block", "snapshot", "create", "vol1@s");
    const held = await holdClient(
      daemon.uri("vol1"),
      `h.pwrite(b"after!" * 100, 0)\nh.flush()`,
      `h.shutdown()`,
    );
    let released = false;
    try {
      const restore = await run("torusctl", [
        "block",
        "snapshot",
        "restore",
        "vol1@s",
        "--data-dir",
        dataDir,
      ]);
      assert.notEqual(restore.code, 0, "restore while in use succeeded");
      const lines = restore.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, `one line on stderr: ${restore.stderr}`);
      assert.match(lines[0]!, /^torusctl: .*in use/);
      const result = await held.release();
      released = true;
      assert.equal(result.code, 0, result.stderr);
    } finally {
      if (!released) await held.release();
    }
    // The refused restore changed nothing.
    await nbdsh(daemon.uri("vol1"), `assert h.pread(600, 0) == b"after!" * 100\nh.shutdown()`);
    // Once the last client is gone the lock is released, and restore works.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const listed = JSON.parse(await torusctlOk(dataDir, "volume", "list", "-o", "json"));
      if (listed[0].status === "free") break;
      assert.ok(Date.now() < deadline, `vol1 still ${listed[0].status} 10 s after its last client`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await torusctlOk(dataDir, "block", "snapshot", "restore", "vol1@s");
    await nbdsh(daemon.uri("vol1"), `assert h.pread(600, 0) == b"before" * 100\nh.shutdown()`);
  });
});

Deno.test("persistence: FLUSHed writes survive kill -9 of torusd", async () => {
  await withTorusd(async (world) => {
    const { dir, dataDir } = world;
    const size = 16 * MiB;
    await createVolume(dataDir, "vol", "16MiB");
    const image = await randomFile(dir, "image.bin", size);
    const ranges = pieces(size);
    // The client stays connected: the kill, not a disconnect, ends the session.
    const held = await holdClient(
      world.daemon.uri("vol"),
      writePieces(image, ranges) + "h.flush()\n",
    );
    try {
      const status = await restart(world, "SIGKILL");
      assert.equal(status.signal, "SIGKILL");
    } finally {
      await held.release(); // its connection is gone; its exit code does not matter
    }
    const expected = expectedAfter(await Deno.readFile(image), ranges);
    // At once: the committed INode, through a snapshot export (which takes no lock).
    await torusctlOk(dataDir, "block", "snapshot", "create", "vol@after-kill");
    assertSameBytes(
      await readExport(dir, world.daemon.uri("vol@after-kill")),
      expected,
      "snapshot after kill -9",
    );
    // The volume itself: the killed torusd's lock lapses with its lease.
    await waitUntilOpens(world.daemon.uri("vol"), LEASE_TTL_MS_DEFAULT + 10_000);
    assertSameBytes(await readExport(dir, world.daemon.uri("vol")), expected, "after kill -9");
  });
});

Deno.test("clean shutdown: unflushed writes, DISC, SIGTERM: exit 0 and the data is there", async () => {
  await withTorusd(async (world) => {
    const { dir, dataDir } = world;
    const size = 16 * MiB;
    await createVolume(dataDir, "vol", "16MiB");
    const image = await randomFile(dir, "image.bin", size);
    const ranges = pieces(size);
    // No FLUSH; h.shutdown() sends NBD_CMD_DISC.
    await nbdsh(world.daemon.uri("vol"), writePieces(image, ranges) + "h.shutdown()\n");
    const status = await restart(world, "SIGTERM");
    assert.equal(status.code, 0, `torusd exited ${status.code} after SIGTERM`);
    const expected = expectedAfter(await Deno.readFile(image), ranges);
    assertSameBytes(await readExport(dir, world.daemon.uri("vol")), expected, "after SIGTERM");
  });
});

Deno.test("clean shutdown: SIGTERM with a client still connected keeps its unflushed writes", async () => {
  await withTorusd(async (world) => {
    const { dir, dataDir } = world;
    const size = 16 * MiB;
    await createVolume(dataDir, "vol", "16MiB");
    const image = await randomFile(dir, "image.bin", size);
    const ranges = pieces(size);
    // Every write is acknowledged before READY; none is flushed.
    const held = await holdClient(world.daemon.uri("vol"), writePieces(image, ranges));
    try {
      const status = await restart(world, "SIGTERM");
      assert.equal(
        status.code,
        0,
        `torusd exited ${status.code} after SIGTERM with a client connected`,
      );
    } finally {
      await held.release();
    }
    const expected = expectedAfter(await Deno.readFile(image), ranges);
    assertSameBytes(
      await readExport(dir, world.daemon.uri("vol")),
      expected,
      "after SIGTERM with a client connected",
    );
  });
});
