/**
 * `nbdinfo` (libnbd) against the server: sizes, flags and the export list.
 */
import assert from "node:assert/strict";
import { runTool, runToolOk, startServer } from "./_tools.ts";

const MiB = 1024 * 1024;

interface NbdinfoExport {
  "export-name": string;
  "export-size": number;
  is_read_only: boolean;
  can_flush: boolean;
  can_fua: boolean;
  can_trim: boolean;
  can_zero: boolean;
  can_multi_conn: boolean;
  block_size_maximum?: number;
}

async function nbdinfoJson(
  uri: string,
): Promise<{ structured: boolean; exports: NbdinfoExport[] }> {
  const { stdout } = await runToolOk("nbdinfo", ["--json", uri]);
  return JSON.parse(stdout);
}

Deno.test("nbdinfo --json reports size and flags of a writable export", async () => {
  const server = startServer([{ name: "disk", sizeBytes: 64 * MiB }]);
  try {
    const info = await nbdinfoJson(server.uri("disk"));
    assert.equal(info.structured, true);
    const [exp] = info.exports;
    assert.ok(exp);
    assert.equal(exp["export-name"], "disk");
    assert.equal(exp["export-size"], 64 * MiB);
    assert.equal(exp.is_read_only, false);
    assert.equal(exp.can_flush, true);
    assert.equal(exp.can_fua, true);
    assert.equal(exp.can_trim, true);
    assert.equal(exp.can_zero, true);
    assert.equal(exp.can_multi_conn, true);
    assert.equal(exp.block_size_maximum, 32 * MiB);
  } finally {
    await server.close();
  }
});

Deno.test("nbdinfo --json reports a read-only export, and multi-conn only when it holds", async () => {
  const server = startServer([
    { name: "ro", sizeBytes: 3 * MiB + 512, readOnly: true, multiConn: false },
  ]);
  try {
    const [exp] = (await nbdinfoJson(server.uri("ro"))).exports;
    assert.ok(exp);
    assert.equal(exp["export-size"], 3 * MiB + 512);
    assert.equal(exp.is_read_only, true);
    assert.equal(exp.can_flush, true);
    assert.equal(exp.can_fua, false);
    assert.equal(exp.can_trim, false);
    assert.equal(exp.can_zero, false);
    assert.equal(exp.can_multi_conn, false);
    // The default export ("") is the first one.
    const [byDefault] = (await nbdinfoJson(server.uri())).exports;
    assert.equal(byDefault?.["export-size"], 3 * MiB + 512);
  } finally {
    await server.close();
  }
});

Deno.test("nbdinfo --list shows every export name (NBD_OPT_LIST)", async () => {
  const server = startServer([
    { name: "alpha", sizeBytes: MiB },
    { name: "beta", sizeBytes: 2 * MiB, readOnly: true },
    { name: "vol/with spaces", sizeBytes: 4096 },
  ]);
  try {
    const { stdout } = await runToolOk("nbdinfo", ["--list", server.uri()]);
    assert.match(stdout, /export="alpha"/);
    assert.match(stdout, /export="beta"/);
    assert.match(stdout, /export="vol\/with spaces"/);
    const { stdout: json } = await runToolOk("nbdinfo", ["--list", "--json", server.uri()]);
    const listed = JSON.parse(json).exports as NbdinfoExport[];
    assert.deepEqual(listed.map((e) => [e["export-name"], e["export-size"], e.is_read_only]), [
      ["alpha", MiB, false],
      ["beta", 2 * MiB, true],
      ["vol/with spaces", 4096, false],
    ]);
  } finally {
    await server.close();
  }
});

Deno.test("nbdinfo of an unknown export fails: NBD_REP_ERR_UNKNOWN", async () => {
  const server = startServer([{ name: "disk", sizeBytes: MiB }]);
  try {
    const result = await runTool("nbdinfo", [server.uri("missing")]);
    assert.notEqual(result.code, 0);
    // libnbd reports NBD_REP_ERR_UNKNOWN as ENOENT.
    assert.match(result.stderr, /No such file or directory for export: missing/);
  } finally {
    await server.close();
  }
});
