import assert from "node:assert/strict";
import { join } from "node:path";
import { randomFile, runTool, runToolOk } from "../nbd/_tools.ts";
import { TextLineStream } from "./_lines.ts";
import { ROOT, run } from "./_cli.ts";

/** How long a server may take to start. */
const START_TIMEOUT_MS = 30_000;

/** Spawns `cmd/<binary>.ts args`, resolving with the NBD port once it logs it. */
async function spawnServer(binary: string, args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}cmd/${binary}.ts`, ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(new TextLineStream())
    .getReader();
  const log: string[] = [];
  const timer = setTimeout(() => child.kill("SIGKILL"), START_TIMEOUT_MS);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`${binary} exited before serving:\n${log.join("\n")}`);
      log.push(value);
      const match = /NBD on 127\.0\.0\.1:(\d+)/.exec(value);
      if (match) {
        (async () => {
          for (;;) {
            const next = await reader.read().catch(() => ({ done: true, value: "" }));
            if (next.done) break;
            log.push(next.value);
          }
        })();
        return { child, port: Number(match[1]), log };
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

/** The status endpoint's base URL, once the server has logged it. */
async function httpStatusUrl(log: string[]): Promise<string> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    for (const line of log) {
      const match = /HTTP status on (http:\/\/127\.0\.0\.1:\d+)\/metrics/.exec(line);
      if (match) return match[1]!;
    }
    if (Date.now() > deadline) throw new Error(`no HTTP status line in:\n${log.join("\n")}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

Deno.test("torusblk nbdserve: serves a data directory's volumes with /metrics; read-only mode; refuses while torusd runs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "torusblk-" });
  const dataDir = join(dir, "data");
  const dd = ["--data-dir", dataDir];
  try {
    assert.equal((await run("torusctl", ["init", "--block-size", "64KiB", ...dd])).code, 0);
    assert.equal((await run("torusctl", ["volume", "create-block", "v", "8MiB", ...dd])).code, 0);
    const source = await randomFile(dir, "source.bin", 8 * 1024 * 1024);

    let server = await spawnServer("torusblk", [
      "nbdserve",
      "-l",
      "127.0.0.1:0",
      "--http",
      "127.0.0.1:0",
      ...dd,
    ]);
    try {
      await runToolOk("nbdcopy", [source, `nbd://127.0.0.1:${server.port}/v`]);
      const status = await httpStatusUrl(server.log);
      const health = await fetch(`${status}/healthz`);
      assert.equal(health.status, 200);
      assert.equal(await health.text(), "ok\n");
      const metrics = await (await fetch(`${status}/metrics`)).text();
      assert.match(metrics, /^torus_nbd_request_bytes_total\{command="write"\} 8388608$/m);
      assert.match(metrics, /^torus_storage_blocks\{storage="current"\} [1-9]\d*$/m);
      assert.match(metrics, /^torus_gc_runs_total\{trigger="full"\} 0$/m);
      assert.doesNotMatch(metrics, /torus_ring_version/, "one machine has no ring");
    } finally {
      server.child.kill("SIGTERM");
      assert.equal((await server.child.status).code, 0, server.log.join("\n"));
    }

    server = await spawnServer("torusblk", ["nbdserve", "-l", "127.0.0.1:0", "--read-only", ...dd]);
    try {
      const uri = `nbd://127.0.0.1:${server.port}/v`;
      const info = JSON.parse((await runToolOk("nbdinfo", ["--json", uri])).stdout);
      assert.equal(info.exports[0]["is_read_only"], true);
      const out = join(dir, "out.bin");
      await runToolOk("nbdcopy", [uri, out]);
      assert.deepEqual(await Deno.readFile(out), await Deno.readFile(source));
      const write = await runTool("nbdcopy", [source, uri]);
      assert.notEqual(write.code, 0, "writing a read-only export fails");
    } finally {
      server.child.kill("SIGTERM");
      await server.child.status;
    }

    const daemon = await spawnServer("torusd", ["--nbd", "127.0.0.1:0", ...dd]);
    try {
      const refused = await run("torusblk", ["nbdserve", "-l", "127.0.0.1:0", ...dd]);
      assert.notEqual(refused.code, 0);
      assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
      assert.match(refused.stderr, /in use by another process/);
    } finally {
      daemon.child.kill("SIGTERM");
      await daemon.child.status;
    }
    for (const flags of [["-l", "nonsense:port"], ["--http", "nonsense:port"]]) {
      const bad = await run("torusblk", ["nbdserve", ...flags, ...dd]);
      assert.notEqual(bad.code, 0);
      assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
      assert.match(bad.stderr, /Cannot parse address/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
