/**
 * `nbdcopy` and `qemu-img` against the server: a 64 MiB random image goes in
 * and comes back out byte-identical.
 */
import assert from "node:assert/strict";
import { randomFile, runTool, runToolOk, startServer } from "./_tools.ts";

const MiB = 1024 * 1024;
const IMAGE_BYTES = 64 * MiB;

Deno.test("nbdcopy in and out is byte-identical; qemu-img compare agrees", async () => {
  const dir = await Deno.makeTempDir({ prefix: "torus-nbdcopy-" });
  const server = startServer([{ name: "disk", sizeBytes: IMAGE_BYTES }]);
  try {
    const source = await randomFile(dir, "source.img", IMAGE_BYTES);
    const copy = `${dir}/copy.img`;
    await runToolOk("nbdcopy", ["--flush", source, server.uri("disk")]);
    await runToolOk("nbdcopy", [server.uri("disk"), copy]);
    const [a, b] = await Promise.all([Deno.readFile(source), Deno.readFile(copy)]);
    assert.equal(b.length, IMAGE_BYTES);
    assert.ok(a.every((byte, i) => byte === b[i]), "the copy differs from the source");
    // qemu's own NBD client reads the export and compares it with the source.
    const compared = await runToolOk("qemu-img", [
      "compare",
      "-f",
      "raw",
      "-F",
      "raw",
      source,
      server.uri("disk"),
    ]);
    assert.match(compared.stdout, /Images are identical/);
    // A one-byte change through the export is seen by qemu-img.
    const changed = a.slice(0, 4096);
    changed[600] = changed[600]! ^ 0xff;
    await Deno.writeFile(`${dir}/changed.img`, changed);
    await runToolOk("nbdcopy", [`${dir}/changed.img`, server.uri("disk")]);
    const mismatch = await runTool("qemu-img", [
      "compare",
      "-f",
      "raw",
      "-F",
      "raw",
      source,
      server.uri("disk"),
    ]);
    assert.equal(mismatch.code, 1, mismatch.stderr);
    // qemu-img reports the 512-byte sector of the first difference.
    assert.match(mismatch.stdout, /Content mismatch at offset 512!/);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
