/**
 * Scrubbing a real data directory: a byte flipped on disk in a stored block
 * is found by `torusctl scrub` (named, non-zero exit) and by torusd's
 * background scrubber (logged, counted in `/metrics`), and reads of it fail
 * instead of returning wrong bytes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Prng } from "../../lib/prng.ts";
import { DATA_FILE_NAME } from "../../lib/storage/file_block_store.ts";
import { runTool } from "../nbd/_tools.ts";
import { run } from "./_cli.ts";
import { flipByte, startTorusd, stopTorusd, stopTorusdCleanly } from "./_torusd.ts";

const KiB = 1024;
const BLOCK = 64 * KiB;
/** Slot whose block the test corrupts: loading 3 MiB stores far more blocks than this. */
const CORRUPT_SLOT = 10;

Deno.test("scrub: a flipped byte on disk is found by torusctl scrub and by torusd, never read back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "torus-scrub-" });
  const dataDir = join(dir, "data");
  const ctl = (...args: string[]) => run("torusctl", [...args, "--data-dir", dataDir]);
  try {
    assert.equal((await ctl("init", "--block-size", "64KiB")).code, 0);
    const source = join(dir, "source.img");
    await Deno.writeFile(source, new Prng(21).fill(new Uint8Array(3 * 1024 * KiB)));
    const loaded = await ctl("block", "load", source, "vol", "4MiB");
    assert.equal(loaded.code, 0, loaded.stderr);

    let scrub = await ctl("scrub");
    assert.equal(scrub.code, 0, scrub.stderr);
    assert.match(scrub.stdout, /^checked [1-9]\d* blocks \(.*\): 0 corrupt, 0 unreadable$/m);

    await flipByte(join(dataDir, "block", DATA_FILE_NAME), CORRUPT_SLOT * BLOCK + 1000, 0x5a);

    scrub = await ctl("scrub");
    assert.notEqual(scrub.code, 0);
    assert.match(scrub.stdout, /: 1 corrupt, 0 unreadable$/m);
    assert.match(scrub.stdout, /^corrupt: block \d+ of INode \d+ of volume id 1$/m);
    assert.equal(
      scrub.stderr.trim().split("\n").filter((line) => line.startsWith("torusctl:")).length,
      1,
    );
    assert.match(scrub.stderr, /1 corrupt and 0 unreadable blocks/);

    const daemon = await startTorusd(dataDir, ["--scrub-rate", "64MiB"]);
    try {
      const metricsUrl = `http://127.0.0.1:${daemon.httpPort}/metrics`;
      const deadline = Date.now() + 30_000;
      let metrics = "";
      while (!/^torus_scrub_passes_total [1-9]/m.test(metrics)) {
        assert.ok(Date.now() < deadline, `no scrub pass in 30 s:\n${metrics}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        metrics = await (await fetch(metricsUrl)).text();
      }
      assert.match(metrics, /^torus_scrub_corrupt_blocks_total 1$/m);
      assert.match(metrics, /^torus_scrub_checked_blocks_total [1-9]\d*$/m);
      assert.match(metrics, /^torus_scrub_pass_done_ratio 1$/m);
      assert.match(
        daemon.log.join("\n"),
        /scrub: block \d+ of INode \d+ of volume id 1 is corrupt/,
      );
      // A read of the whole volume meets the block and fails: never wrong bytes.
      const out = join(dir, "out.img");
      const copy = await runTool("nbdcopy", [`nbd://127.0.0.1:${daemon.port}/vol`, out]);
      assert.notEqual(copy.code, 0, "reading a corrupt block fails");
      await stopTorusdCleanly(daemon);
    } finally {
      await stopTorusd(daemon); // no-op when already stopped
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
