import assert from "node:assert/strict";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { ETCD_INSTALL_COMMAND, startEtcd } from "./_etcd_server.ts";

/** True when something accepts TCP connections on 127.0.0.1:`port`. */
async function listening(port: number): Promise<boolean> {
  try {
    const connection = await Deno.connect({ hostname: "127.0.0.1", port });
    connection.close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) return false;
    throw error;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Whether process `pid` exists (a zombie counts: its parent has not reaped it). */
function processExists(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

Deno.test("startEtcd() serves, keeps data across kill and restart, and close() removes it", async () => {
  const etcd = await startEtcd();
  const directory = join(etcd.dataDir, "..");
  try {
    assert.match(etcd.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(etcd.endpoints, [etcd.endpoint]);
    assert.ok(etcd.running);
    assert.ok(await exists(etcd.dataDir));
    const client = new Etcd3({ hosts: etcd.endpoints });
    try {
      await client.put("harness/key").value("before");
    } finally {
      client.close();
    }

    await etcd.kill();
    assert.equal(etcd.running, false);
    assert.equal(await listening(etcd.clientPort), false, "killed etcd does not listen");
    assert.ok(await exists(etcd.dataDir), "kill keeps the data");

    const port = etcd.clientPort;
    await etcd.restart();
    assert.equal(etcd.clientPort, port, "restart keeps the port");
    const again = new Etcd3({ hosts: etcd.endpoints });
    try {
      assert.equal(await again.get("harness/key").string(), "before", "restart keeps the data");
    } finally {
      again.close();
    }
    await etcd.stop();
    assert.equal(await listening(port), false);
    await etcd.restart();
    assert.ok(await listening(port));
    assert.match(await etcd.logTail(), /serving client traffic/);
  } finally {
    await etcd.close();
  }
  assert.equal(await exists(directory), false, "close() removes the temporary directory");
  assert.equal(await listening(etcd.clientPort), false);
  await etcd.close();
});

Deno.test("startEtcd() with a missing binary fails naming the package to install", async () => {
  await assert.rejects(startEtcd({ binary: "/nonexistent/etcd" }), (error: unknown) => {
    assert.ok(error instanceof Error);
    assert.match(error.message, /"\/nonexistent\/etcd" is not installed/);
    assert.ok(error.message.includes(ETCD_INSTALL_COMMAND), error.message);
    return true;
  });
});

Deno.test("startEtcd() servers are independent and serve TLS on request", async () => {
  await using plain = await startEtcd();
  await using secure = await startEtcd({ tls: true });
  assert.notEqual(plain.clientPort, secure.clientPort);
  assert.match(secure.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(secure.tls !== undefined);
  for (const file of Object.values(secure.tls)) assert.ok(await exists(file), file);
  assert.equal(plain.tls, undefined);
  assert.match(await secure.logTail(), /serving client traffic securely/);
});

Deno.test("startEtcd(): a test process that dies without closing leaves no etcd behind", async () => {
  const script = `
    import { startEtcd } from ${JSON.stringify(new URL("./_etcd_server.ts", import.meta.url).href)};
    const etcd = await startEtcd();
    const pid = Number(await Deno.readTextFile(etcd.dataDir + "/../etcd.pid"));
    console.log(JSON.stringify({ pid, directory: etcd.dataDir + "/..", port: etcd.clientPort }));
    Deno.exit(0);
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const { pid, directory, port } = JSON.parse(new TextDecoder().decode(output.stdout));
  assert.ok(Number.isSafeInteger(pid) && pid > 0);
  const deadlineMs = performance.now() + 10_000;
  while (performance.now() < deadlineMs) {
    if (!processExists(pid) && !(await exists(directory))) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(processExists(pid), false, `etcd ${pid} was left running`);
  assert.equal(await exists(directory), false, `${directory} was left behind`);
  assert.equal(await listening(port), false);
});

Deno.test("startEtcd(): a test module that never closes its etcd leaves nothing behind", async () => {
  const directory = await Deno.makeTempDir({ prefix: "torus-etcd-harness-" });
  try {
    const report = join(directory, "report.json");
    const module = join(directory, "leaky_test.ts");
    await Deno.writeTextFile(
      module,
      `import { startEtcd } from ${
        JSON.stringify(new URL("./_etcd_server.ts", import.meta.url).href)
      };
      const etcd = await startEtcd();
      const pid = Number(await Deno.readTextFile(etcd.dataDir + "/../etcd.pid"));
      await Deno.writeTextFile(${JSON.stringify(report)}, JSON.stringify({
        pid, directory: etcd.dataDir + "/..", port: etcd.clientPort,
      }));
      Deno.test("leaks its etcd", () => {});
      `,
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["test", "-A", "--no-config", module],
      cwd: directory,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    const { pid, directory: etcdDirectory, port } = JSON.parse(await Deno.readTextFile(report));
    const deadlineMs = performance.now() + 10_000;
    while (performance.now() < deadlineMs) {
      if (!processExists(pid) && !(await exists(etcdDirectory))) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(processExists(pid), false, `etcd ${pid} was left running`);
    assert.equal(await exists(etcdDirectory), false, `${etcdDirectory} was left behind`);
    assert.equal(await listening(port), false);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});
