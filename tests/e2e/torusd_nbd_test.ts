import assert from "node:assert/strict";
import { join } from "node:path";
import { randomFile, runToolOk } from "../nbd/_tools.ts";
import { run } from "./_cli.ts";
import { nbdsh, startTorusd, stopTorusd, stopTorusdCleanly } from "./_torusd.ts";

Deno.test("torusd --nbd: nbdcopy in and out byte-identical; kill -9 after FLUSH loses nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "torusd-nbd-" });
  const dataDir = join(dir, "data");
  try {
    let daemon = await startTorusd(dataDir, ["--auto-init", "--size", "256MiB"]);
    try {
      // Created while torusd runs: served at once.
      const created = await run("torusctl", [
        "volume",
        "create-block",
        "vol1",
        "48MiB",
        "--data-dir",
        dataDir,
      ]);
      assert.equal(created.code, 0, created.stderr);
      const source = await randomFile(dir, "source.bin", 40 * 1024 * 1024);
      const uri = `nbd://127.0.0.1:${daemon.port}/vol1`;
      await runToolOk("nbdcopy", ["--flush", source, uri]); // FLUSH once copied
      const info = JSON.parse((await runToolOk("nbdinfo", ["--json", uri])).stdout);
      assert.equal(info.exports[0]["export-size"], 48 * 1024 * 1024);
      assert.equal(info.exports[0]["can_multi_conn"], true);
      const out = join(dir, "out.bin");
      await runToolOk("nbdcopy", [uri, out]);
      const expected = await Deno.readFile(source);
      const got = await Deno.readFile(out);
      assert.deepEqual(got.subarray(0, expected.length), expected);
      assert.ok(got.subarray(expected.length).every((b) => b === 0));
      const metrics = await (await fetch(`http://127.0.0.1:${daemon.httpPort}/metrics`)).text();
      assert.match(metrics, /torus_storage_blocks\{storage="current"\} [1-9]\d*/);
      assert.match(metrics, /torus_storage_blocks_total\{storage="current"\} 512/);
      assert.match(metrics, /torus_storage_delta_blocks\{storage="current"\} \d+/);
      assert.match(metrics, /torus_nbd_connections 0/);
      // Every byte nbdcopy moved is counted, by command, and nothing failed.
      const sample = (name: string) =>
        Number(new RegExp(`^${name} (\\S+)$`, "m").exec(metrics)?.[1]);
      assert.equal(sample('torus_nbd_request_bytes_total\\{command="write"\\}'), 40 * 1024 * 1024);
      // nbdcopy read the 40 MiB written and skipped the holes block status reported; nbdinfo
      // may probe the first sectors.
      const readBytes = sample('torus_nbd_request_bytes_total\\{command="read"\\}');
      assert.ok(readBytes >= 40 * 1024 * 1024 && readBytes <= 41 * 1024 * 1024, `${readBytes}`);
      assert.ok(sample('torus_nbd_requests_total\\{command="flush"\\}') >= 1);
      assert.doesNotMatch(metrics, /^torus_nbd_request_errors_total\{[^}]*\} [1-9]/m);
      assert.match(
        metrics,
        /^torus_nbd_request_duration_seconds_bucket\{command="write",le="\+Inf"\} [1-9]\d*$/m,
      );
      assert.match(metrics, /^torus_nbd_connections_accepted_total [3-9]$/m);
      // The store has room: no write waited for a collection.
      assert.match(metrics, /^torus_gc_runs_total\{trigger="full"\} 0$/m);
      assert.match(metrics, /^torus_gc_seconds_total\{trigger="close"\} [\d.e-]+$/m);
      const health = await fetch(`http://127.0.0.1:${daemon.httpPort}/healthz`);
      assert.equal(health.status, 200);
      assert.equal(await health.text(), "ok\n");
      const listed = await run("torusctl", ["volume", "list", "-o", "json", "--data-dir", dataDir]);
      assert.equal(
        JSON.parse(listed.stdout)[0].status,
        "free",
        "lock released after the last client",
      );

      daemon.child.kill("SIGKILL");
      await daemon.child.status;
      daemon = await startTorusd(dataDir);
      const after = join(dir, "after.bin");
      await runToolOk("nbdcopy", [`nbd://127.0.0.1:${daemon.port}/vol1`, after]);
      assert.deepEqual((await Deno.readFile(after)).subarray(0, expected.length), expected);
      await stopTorusdCleanly(daemon); // SIGTERM: requests finish, data synced, exit 0
    } finally {
      await stopTorusd(daemon); // no-op when already stopped
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("torusctl volume resize: grows a volume torusd serves; new connections see it; bad sizes change nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "torusd-resize-" });
  const dataDir = join(dir, "data");
  const ctl = (...args: string[]) => run("torusctl", [...args, "--data-dir", dataDir]);
  const daemon = await startTorusd(dataDir, ["--auto-init", "--size", "128MiB"]);
  try {
    assert.equal((await ctl("volume", "create-block", "vol1", "8MiB")).code, 0);
    const uri = `nbd://127.0.0.1:${daemon.port}/vol1`;
    const sizeOf = async () =>
      JSON.parse((await runToolOk("nbdinfo", ["--json", uri])).stdout).exports[0]["export-size"];
    const source = await randomFile(dir, "source.bin", 8 * 1024 * 1024);
    await runToolOk("nbdcopy", ["--flush", source, uri]);

    let resized = await ctl("volume", "resize", "vol1", "16MiB");
    assert.equal(resized.code, 0, resized.stderr);
    assert.match(resized.stdout, /resized volume "vol1" from 8 MiB to 16 MiB/);
    assert.equal(await sizeOf(), 16 * 1024 * 1024);
    resized = await ctl("block", "resize", "vol1", "+4MiB");
    assert.equal(resized.code, 0, resized.stderr);
    assert.equal(await sizeOf(), 20 * 1024 * 1024);

    for (
      const [args, pattern] of [
        [["vol1", "1MiB"], /shrink/],
        [["vol1", "12XB"], /12XB/],
        [["nope", "1GiB"], /"nope".*does not exist/],
        [["vol1"], /NAME \[\+\]SIZE|argument/i],
      ] as const
    ) {
      const bad = await ctl("volume", "resize", ...args);
      assert.notEqual(bad.code, 0, args.join(" "));
      assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
      assert.match(bad.stderr, pattern);
    }
    assert.equal(await sizeOf(), 20 * 1024 * 1024, "refused resizes changed nothing");

    // The old bytes are intact and the new ones read as zeros.
    const out = join(dir, "out.bin");
    await runToolOk("nbdcopy", [uri, out]);
    const got = await Deno.readFile(out);
    assert.equal(got.length, 20 * 1024 * 1024);
    assert.deepEqual(got.subarray(0, 8 * 1024 * 1024), await Deno.readFile(source));
    assert.ok(got.subarray(8 * 1024 * 1024).every((byte) => byte === 0));
    await stopTorusdCleanly(daemon);
  } finally {
    await stopTorusd(daemon);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("block status: nbdinfo --map and qemu-img map see written blocks as data, the rest as holes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "torusd-map-" });
  const dataDir = join(dir, "data");
  const daemon = await startTorusd(dataDir, ["--auto-init", "--size", "64MiB"]);
  try {
    assert.equal(
      (await run("torusctl", ["volume", "create-block", "vol", "16MiB", "--data-dir", dataDir]))
        .code,
      0,
    );
    const uri = `nbd://127.0.0.1:${daemon.port}/vol`;
    const MiB = 1024 * 1024;
    // 1 MiB of data at 2 MiB (two 512 KiB blocks), flushed.
    await nbdsh(uri, `h.pwrite(b"\\x01" * ${MiB}, ${2 * MiB}); h.flush()`);
    const map = async () =>
      JSON.parse((await runToolOk("nbdinfo", ["--map", "--json", uri])).stdout) as {
        offset: number;
        length: number;
        type: number;
      }[];
    assert.deepEqual(
      (await map()).map(({ offset, length, type }) => [offset, length, type]),
      [[0, 2 * MiB, 3], [2 * MiB, MiB, 0], [3 * MiB, 13 * MiB, 3]],
    );
    const qemu = JSON.parse((await runToolOk("qemu-img", ["map", "--output=json", uri])).stdout);
    assert.deepEqual(
      qemu.map((
        e: { start: number; length: number; data: boolean },
      ) => [e.start, e.length, e.data]),
      [[0, 2 * MiB, false], [2 * MiB, MiB, true], [3 * MiB, 13 * MiB, false]],
    );
    const metrics = await (await fetch(`http://127.0.0.1:${daemon.httpPort}/metrics`)).text();
    assert.match(metrics, /^torus_nbd_requests_total\{command="block_status"\} [1-9]\d*$/m);
    // Trimmed whole blocks become holes again.
    await nbdsh(uri, `h.trim(${MiB}, ${2 * MiB}); h.flush()`);
    assert.deepEqual((await map()).map(({ length, type }) => [length, type]), [[16 * MiB, 3]]);
    await stopTorusdCleanly(daemon);
  } finally {
    await stopTorusd(daemon);
    await Deno.remove(dir, { recursive: true });
  }
});
