import assert from "node:assert/strict";
import { join } from "node:path";
import { Prng } from "../../lib/prng.ts";
import { run } from "./_cli.ts";

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "torusctl-e2e-" });
}

Deno.test("torusctl: init, create, list, snapshot, load, dump and delete in a data directory", async () => {
  const dir = await tempDir();
  const dd = ["--data-dir", join(dir, "data")];
  try {
    let r = await run("torusctl", ["init", "--block-size", "64KiB", ...dd]);
    assert.equal(r.code, 0, r.stderr);
    r = await run("torusctl", ["volume", "create-block", "vol1", "10MiB", ...dd]);
    assert.equal(r.code, 0, r.stderr);
    r = await run("torusctl", ["--data-dir", join(dir, "data"), "volume", "list"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^VOLUME NAME\s+SIZE\s+TYPE\s+STATUS\n/);
    assert.match(r.stdout, /vol1\s+10 MiB\s+block\s+free/);
    r = await run("torusctl", ["volume", "list", "--output", "json", ...dd]);
    const listed = JSON.parse(r.stdout);
    assert.deepEqual(listed.map((v: { name: string }) => v.name), ["vol1"]);
    assert.equal(listed[0].sizeBytes, 10 * 1024 * 1024);

    const source = join(dir, "source.img");
    const data = new Prng(11).fill(new Uint8Array(3 * 1024 * 1024 + 123));
    await Deno.writeFile(source, data);
    r = await run("torusctl", ["block", "load", source, "vol2", "4MiB", ...dd]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /copied 3145851 bytes/);
    r = await run("torusctl", ["block", "snapshot", "create", "vol2@before", ...dd]);
    assert.equal(r.code, 0, r.stderr);
    r = await run("torusctl", ["block", "snapshot", "list", "vol2", ...dd]);
    assert.match(r.stdout, /Volume: vol2\nSNAPSHOT NAME\s+TIMESTAMP\nbefore\s+\d{4}-/);

    const target = join(dir, "dump.img");
    r = await run("torusctl", ["block", "dump", "vol2", target, ...dd]);
    assert.equal(r.code, 0, r.stderr);
    const dumped = await Deno.readFile(target);
    assert.equal(dumped.length, 4 * 1024 * 1024);
    assert.deepEqual(dumped.subarray(0, data.length), data);
    assert.ok(dumped.subarray(data.length).every((b) => b === 0));
    r = await run("torusctl", ["block", "dump", "vol2", "-", ...dd]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length > 0, true);

    // A diff of the snapshot from nothing, applied through stdin, makes an identical copy.
    const diff = join(dir, "before.diff");
    r = await run("torusctl", ["block", "diff", "vol2@before", diff, ...dd]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /wrote \d+ changed blocks, 0 trimmed/);
    r = await run(
      "torusctl",
      ["block", "apply-diff", "-", "copy", ...dd],
      await Deno.readFile(diff),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /applied before to "copy": .* written, 0 B zeroed; snapshot copy@before/,
    );
    r = await run("torusctl", ["block", "dump", "copy", join(dir, "copy.img"), ...dd]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await Deno.readFile(join(dir, "copy.img")), dumped);
    r = await run("torusctl", ["block", "apply-diff", source, "other", ...dd]);
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /not a Torus diff/);
    r = await run("torusctl", ["volume", "delete", "copy", ...dd]);
    assert.equal(r.code, 0, r.stderr);

    r = await run("torusctl", ["block", "snapshot", "delete", "vol2@before", ...dd]);
    assert.equal(r.code, 0, r.stderr);
    r = await run("torusctl", ["volume", "delete", "vol2", ...dd]);
    assert.equal(r.code, 0, r.stderr);
    r = await run("torusctl", ["gc", ...dd]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deleted \d+ blocks, kept 0/);
    r = await run("torusctl", ["volume", "list", "-o", "csv", ...dd]);
    assert.equal(r.stdout.trim(), "vol1,10 MiB,block,free");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("torusctl: bad input is one line on stderr, a non-zero exit, and changes nothing", async () => {
  const dir = await tempDir();
  const dd = ["--data-dir", join(dir, "data")];
  try {
    const expectOneLine = (r: { code: number; stderr: string }, pattern: RegExp) => {
      assert.notEqual(r.code, 0);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, pattern);
    };
    expectOneLine(
      await run("torusctl", ["volume", "list", ...dd]),
      /not initialized: run "torusctl init/,
    );
    assert.equal(await Deno.stat(join(dir, "data")).catch(() => null), null, "nothing created");
    assert.equal((await run("torusctl", ["init", ...dd])).code, 0);
    expectOneLine(await run("torusctl", ["init", ...dd]), /already/i);
    expectOneLine(
      await run("torusctl", ["frobnicate", ...dd]),
      /unknown command "torusctl frobnicate"/,
    );
    expectOneLine(await run("torusctl", ["volume", "list", "--bogus", ...dd]), /bogus/);
    expectOneLine(
      await run("torusctl", ["volume", "create-block", "v", "ten gigs", ...dd]),
      /Cannot parse size "ten gigs"/,
    );
    expectOneLine(
      await run("torusctl", ["volume", "create-block", "v", ...dd]),
      /usage: torusctl volume create-block NAME SIZE/,
    );
    expectOneLine(await run("torusctl", ["volume", "delete", "missing", ...dd]), /missing/);
    expectOneLine(
      await run("torusctl", ["block", "snapshot", "create", "nosnap", ...dd]),
      /VOLUME@SNAPSHOT/,
    );
    expectOneLine(await run("torusctl", ["block", "dump", "missing", "-", ...dd]), /missing/);
    for (const size of ["1000", "12KiB", "32MiB"]) {
      const fresh = join(dir, `fresh-${size}`);
      expectOneLine(
        await run("torusctl", ["init", "--block-size", size, "--data-dir", fresh]),
        /Cannot use a block size of .*: it must be a power of two from 256 B to 16 MiB/,
      );
      expectOneLine(
        await run("torusd", ["--auto-init", "--block-size", size, "--data-dir", fresh]),
        /^torusd: Cannot use a block size of .*: it must be a power of two/,
      );
      // Refused before anything was made: no half-initialized data directory.
      await assert.rejects(Deno.stat(fresh), Deno.errors.NotFound);
    }
    const r = await run("torusctl", ["volume", "list", "-o", "json", ...dd]);
    assert.deepEqual(JSON.parse(r.stdout), []);
    const help = await run("torusctl", ["volume", "create-block", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: torusctl volume create-block NAME SIZE/);
    const version = await run("torusctl", ["version"]);
    assert.match(version.stdout, /^torusctl\nVersion: \d+\.\d+\.\d+/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("torusctl block clone: a clone of a snapshot outlives its source and a collection", async () => {
  const dir = await tempDir();
  const dd = ["--data-dir", join(dir, "data")];
  const ctl = (...args: string[]) => run("torusctl", [...args, ...dd]);
  try {
    assert.equal((await ctl("init", "--block-size", "64KiB")).code, 0);
    const source = join(dir, "image.raw");
    const image = new Prng(12).fill(new Uint8Array(2 * 1024 * 1024));
    await Deno.writeFile(source, image);
    assert.equal((await ctl("block", "load", source, "gold")).code, 0);
    assert.equal((await ctl("block", "snapshot", "create", "gold@v1")).code, 0);
    let r = await ctl("block", "clone", "gold@v1", "vm1");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /created volume "vm1" \(2 MiB\) from gold@v1/);
    const dumpOf = async (name: string) => {
      const out = join(dir, `${name}.dump`);
      const dumped = await ctl("block", "dump", name, out);
      assert.equal(dumped.code, 0, dumped.stderr);
      return await Deno.readFile(out);
    };
    assert.deepEqual(await dumpOf("vm1"), image);
    // gold's snapshot and current version hold the same blocks; vm1 holds them too, shared.
    const du = JSON.parse((await ctl("volume", "du", "-o", "json")).stdout);
    const MiB = 1024 * 1024;
    const row = (name: string) => du.find((r: { name: string }) => r.name === name);
    assert.deepEqual(
      [row("gold").usedBytes, row("gold").snapshotOnlyBytes, row("gold").sharedBytes],
      [2 * MiB, 0, 0],
    );
    assert.equal(row("gold").snapshots, 1);
    assert.deepEqual([row("vm1").usedBytes, row("vm1").sharedBytes], [2 * MiB, 2 * MiB]);
    r = await ctl("volume", "du", "vm1");
    assert.match(
      r.stdout,
      /^VOLUME NAME\s+PROVISIONED\s+USED\s+SNAPSHOTS ONLY\s+SHARED\s+SNAPSHOTS$/m,
    );
    assert.match(r.stdout, /^vm1\s+2 MiB\s+2 MiB\s+0 B\s+2 MiB\s+0$/m);
    assert.equal((await ctl("volume", "delete", "gold")).code, 0);
    r = await ctl("gc");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await dumpOf("vm1"), image, "the clone keeps the blocks it shared");
    r = await ctl("block", "clone", "vm1@nope", "vm2");
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
