import assert from "node:assert/strict";
import { TextLineStream } from "./_lines.ts";
import { openBlockFile } from "../../lib/block/block_volume.ts";
import { LocalNode } from "../../lib/node/local_node.ts";
import { ROOT, run } from "./_cli.ts";

Deno.test("crash: kill -9 of a writer after sync loses nothing synced", async () => {
  const dir = await Deno.makeTempDir({ prefix: "torus-crash-" });
  const dd = ["--data-dir", dir];
  try {
    assert.equal((await run("torusctl", ["init", "--block-size", "64KiB", ...dd])).code, 0);
    assert.equal((await run("torusctl", ["volume", "create-block", "v", "4MiB", ...dd])).code, 0);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}tests/e2e/_crash_file_writer.ts`, dir, "v"],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(
      new TextLineStream(),
    );
    for await (const line of lines) if (line === "SYNCED") break;
    await new Promise((resolve) => setTimeout(resolve, 300)); // unsynced writes in flight
    child.kill("SIGKILL");
    await child.status;

    const node = await LocalNode.open({ dataDir: dir });
    try {
      const context = await node.volumes();
      const file = await openBlockFile(context, "v", { readOnly: true });
      const data = await file.readAt(0, file.sizeBytes);
      for (let i = 0; i < data.length; i++) {
        if (data[i] !== ((i * 31 + 17) & 0xff)) {
          assert.fail(`byte ${i} differs from the synced data`);
        }
      }
      // Opening the block store proved the writer dead and revoked its lease:
      // the volume is free at once, not after the lease's 30 s TTL.
      assert.equal(
        await node.metadata.lockStatus((await node.metadata.getVolume("v")).id),
        "free",
      );
    } finally {
      await node.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
